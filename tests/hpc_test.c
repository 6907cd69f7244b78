/* hpc_test.c -- job-queue clusters on a real batch system: the local Slurm
 * that scripts/start-slurm.sh sets up, through both front ends (PBS
 * directives via qsub, Slurm directives via sbatch).  The generated
 * scripts are checked directive by directive without a batch system; the
 * rest is skipped, with a message, where Slurm is not running. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#define OK(x) do { int rc_ = (x); if (rc_) fail_msg("%s: %s", #x, dt_last_error()); } while (0)

static char bin[1024], preload[1024];
static bool have_slurm;

/* ---------------------------------------------------------------- scripts */

static bool has_line(const char *script, const char *line) {
  size_t n = strlen(line);
  for (const char *p = script; (p = strstr(p, line)) != NULL; p += n)
    if ((p == script || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0')) return true;
  return false;
}

static int count_prefix(const char *script, const char *prefix) {
  int k = 0;
  for (const char *p = script; p && *p;) {
    if (strncmp(p, prefix, strlen(prefix)) == 0) k++;
    p = strchr(p, '\n');
    if (p) p++;
  }
  return k;
}

static void test_job_scripts(void **state) {
  (void)state;
  const char *extra[] = {"--exclusive"};
  const char *prologue[] = {"module load gcc", "export OMP_NUM_THREADS=1"};
  const char *wargs[] = {"--preload", "/shared/lib tasks.so"};
  dt_jobqueue_opts o = {.system = DT_JOBQUEUE_SLURM, .cores = 8, .memory = "16GB", .processes = 2,
                        .queue = "batch", .account = "proj42", .walltime = "02:00:00",
                        .job_name = "analysis", .job_extra_directives = extra,
                        .n_job_extra_directives = 1, .job_script_prologue = prologue,
                        .n_job_script_prologue = 2, .local_directory = "/scratch/me",
                        .log_directory = "/home/me/logs", .worker_command = "/opt/dtask/bin/dtask",
                        .worker_extra_args = wargs, .n_worker_extra_args = 2};
  char *s = dt_jobqueue_job_script(&o, "10.0.0.5:8786", "/home/me/.dtask/auth");
  assert_true(strncmp(s, "#!/usr/bin/env bash\n", 20) == 0);
  assert_true(has_line(s, "#SBATCH -J analysis"));
  assert_true(has_line(s, "#SBATCH -p batch"));
  assert_true(has_line(s, "#SBATCH -A proj42"));
  assert_true(has_line(s, "#SBATCH -n 1"));
  assert_true(has_line(s, "#SBATCH --cpus-per-task=8"));
  assert_true(has_line(s, "#SBATCH --mem=15259M")); /* 16 GB in MiB, rounded up */
  assert_true(has_line(s, "#SBATCH -t 02:00:00"));
  assert_true(has_line(s, "#SBATCH -o /home/me/logs/%x-%j.out"));
  assert_true(has_line(s, "#SBATCH --exclusive"));
  assert_int_equal(count_prefix(s, "#SBATCH "), 9);
  assert_int_equal(count_prefix(s, "#PBS"), 0);
  /* the prologue runs before the workers, in order */
  const char *m = strstr(s, "module load gcc"), *e = strstr(s, "export OMP_NUM_THREADS=1"),
             *w = strstr(s, "/opt/dtask/bin/dtask worker");
  assert_true(m && e && w && m < e && e < w);
  /* two workers per job, each with half the cores, named after the job */
  assert_true(has_line(s, "for i in $(seq 0 1); do"));
  assert_true(has_line(s, "wait"));
  assert_non_null(strstr(s, "--name \"analysis-$JOB_ID-$i\""));
  assert_non_null(strstr(s, "--nthreads 4 "));
  assert_non_null(strstr(s, "DTASK_ADDRESS=10.0.0.5:8786"));
  assert_non_null(strstr(s, "--auth-file /home/me/.dtask/auth "));
  assert_non_null(strstr(s, "--local-directory /scratch/me "));
  assert_non_null(strstr(s, "--preload '/shared/lib tasks.so'"));
  free(s);

  /* PBS, one worker per job, no memory, no queue, defaults */
  dt_jobqueue_opts p = {.system = DT_JOBQUEUE_PBS, .cores = 4, .memory = "2GiB", .queue = "workq",
                        .account = "acct", .job_extra_directives = (const char *[]){"-l place=free"},
                        .n_job_extra_directives = 1, .worker_command = "dtask", .no_auth = true};
  s = dt_jobqueue_job_script(&p, "login1:8786", NULL);
  assert_true(has_line(s, "#PBS -N dtask-worker"));
  assert_true(has_line(s, "#PBS -q workq"));
  assert_true(has_line(s, "#PBS -A acct"));
  assert_true(has_line(s, "#PBS -l select=1:ncpus=4:mem=2148MB"));
  assert_true(has_line(s, "#PBS -l walltime=00:30:00"));
  assert_true(has_line(s, "#PBS -l place=free"));
  assert_int_equal(count_prefix(s, "#PBS "), 6);
  assert_int_equal(count_prefix(s, "#SBATCH"), 0);
  assert_non_null(strstr(s, "exec dtask worker \"$DTASK_ADDRESS\" --name \"dtask-worker-$JOB_ID\" --nthreads 4"));
  assert_null(strstr(s, "--auth-file"));
  free(s);

  /* the dtask command prints the same */
  char out[256], cmd[1700];
  snprintf(out, sizeof(out), "/tmp/dtask-hpc-dry-%d.txt", (int)getpid());
  snprintf(cmd, sizeof(cmd), "%s pbs --dry-run --cores 4 --memory 2GiB --queue workq --account acct "
           "--job-extra-directive '-l place=free' --worker-command dtask --no-auth > %s", bin, out);
  assert_int_equal(system(cmd), 0);
  char *txt = tu_read_file(out);
  unlink(out);
  assert_non_null(txt);
  assert_true(has_line(txt, "#PBS -l select=1:ncpus=4:mem=2148MB"));
  assert_true(has_line(txt, "#PBS -l place=free"));
  free(txt);
}

/* ---------------------------------------------------------------- real jobs */

/* this run's job names (with its pid): the queue may hold other people's
 * jobs, or another test run's, and those are neither counted nor cancelled */
static char job_names[2][40];
static const char *job_name(dt_jobqueue_system sys) {
  int i = sys == DT_JOBQUEUE_PBS;
  if (!job_names[i][0])
    snprintf(job_names[i], sizeof(job_names[i]), "%s-%d", i ? "dt-pbs" : "dt-slurm", (int)getpid());
  return job_names[i];
}

static dt_jobqueue_opts opts_for(dt_jobqueue_system sys) {
  static const char *wargs[2];
  wargs[0] = "--preload";
  wargs[1] = preload;
  return (dt_jobqueue_opts){.system = sys, .cores = 1, .memory = "400MB", .walltime = "00:10:00",
                            .host = "127.0.0.1", .worker_command = bin, .worker_extra_args = wargs,
                            .n_worker_extra_args = 2, .job_name = job_name(sys)};
}

static dt_client *connect_to(dt_jobqueue_cluster *jc) {
  dt_client *c = NULL;
  OK(dt_client_connect(&(dt_client_opts){.address = dt_jobqueue_cluster_address(jc),
                                          .auth_file = dt_jobqueue_cluster_auth_file(jc)},
                       &c));
  return c;
}

static int queue_length(void) { /* our jobs the batch system still has queued or running */
  char out[4096] = "", cmd[256];
  snprintf(cmd, sizeof(cmd), "squeue -h --me -n %s,%s -t PD,R,CF,S -o %%i 2>/dev/null",
           job_name(DT_JOBQUEUE_SLURM), job_name(DT_JOBQUEUE_PBS));
  FILE *f = popen(cmd, "r");
  if (!f) return -1;
  size_t n = fread(out, 1, sizeof(out) - 1, f);
  pclose(f);
  out[n] = '\0';
  int k = 0;
  for (char *p = out; *p; p++) k += *p == '\n';
  return k;
}

static int wait_jobs(dt_jobqueue_cluster *jc, int live, double seconds) {
  int p = -1, r = -1;
  double end = tu_now() + seconds;
  do {
    OK(dt_jobqueue_jobs(jc, &p, &r));
    if (p + r == live) return live;
    usleep(200000);
  } while (tu_now() < end);
  return p + r;
}

static int64_t sum_of_squares(dt_client *c, int n, const char *func, int ms) {
  dt_value **args = calloc((size_t)n, sizeof(*args));
  dt_future **fs = calloc((size_t)n, sizeof(*fs));
  dt_value **vs = calloc((size_t)n, sizeof(*vs));
  for (int i = 0; i < n; i++)
    args[i] = ms ? dt_list_of(2, dt_int(i), dt_int(ms)) : dt_list_of(1, dt_int(i));
  OK(dt_client_map(c, func, args, (size_t)n, &(dt_submit_opts){.pure = DT_NO}, fs));
  OK(dt_client_gather(c, fs, (size_t)n, 120000, vs));
  int64_t s = 0;
  for (int i = 0; i < n; i++) {
    s += dt_value_int(vs[i]);
    dt_value_free(vs[i]);
    dt_future_release(fs[i]);
  }
  free(args);
  free(fs);
  free(vs);
  return s;
}

static int64_t want_sum(int n) { return (int64_t)(n - 1) * n * (2 * n - 1) / 6; }

static void scale_run_shrink(dt_jobqueue_system sys) {
  if (!have_slurm) skip();
  dt_jobqueue_opts o = opts_for(sys);
  dt_jobqueue_cluster *jc;
  OK(dt_jobqueue_cluster_start(&o, &jc));
  OK(dt_jobqueue_scale(jc, 2));
  if (getenv("DT_TRACE")) fprintf(stderr, "%.3f scaled\n", tu_now());
  OK(dt_jobqueue_wait_for_workers(jc, 2, 60000));
  if (getenv("DT_TRACE")) fprintf(stderr, "%.3f workers\n", tu_now());
  dt_client *c = connect_to(jc);
  dt_worker_info *ws;
  size_t nw;
  OK(dt_client_workers(c, 5000, &ws, &nw));
  assert_int_equal(nw, 2);
  for (size_t i = 0; i < nw; i++) /* named after their job */
    assert_true(strncmp(ws[i].name, o.job_name, strlen(o.job_name)) == 0);
  free(ws);
  assert_int_equal(queue_length(), 2); /* the batch system sees our two jobs, by name */
  assert_int_equal(sum_of_squares(c, 1000, "square", 0), want_sum(1000));
  if (getenv("DT_TRACE")) fprintf(stderr, "%.3f graph done\n", tu_now());
  OK(dt_jobqueue_scale(jc, 0));
  assert_int_equal(wait_jobs(jc, 0, 30), 0);
  dt_cluster_info info;
  for (int i = 0; i < 100; i++) {
    OK(dt_client_cluster_info(c, 5000, &info));
    if (info.n_workers == 0) break;
    usleep(100000);
  }
  assert_int_equal(info.n_workers, 0);
  dt_client_close(c);
  dt_jobqueue_cluster_close(jc);
  assert_int_equal(queue_length(), 0);
}

static void test_slurm_scale_run_shrink(void **state) {
  (void)state;
  scale_run_shrink(DT_JOBQUEUE_SLURM);
}
static void test_pbs_scale_run_shrink(void **state) {
  (void)state;
  scale_run_shrink(DT_JOBQUEUE_PBS);
}

/* adapt(0, 2): no jobs while idle, jobs when work arrives, none again after */
static void adapt_cycle(dt_jobqueue_system sys) {
  if (!have_slurm) skip();
  dt_jobqueue_opts o = opts_for(sys);
  dt_jobqueue_cluster *jc;
  OK(dt_jobqueue_cluster_start(&o, &jc));
  OK(dt_jobqueue_adapt(jc, 0, 2));
  usleep(2500000);
  int p, r;
  OK(dt_jobqueue_jobs(jc, &p, &r));
  assert_int_equal(p + r, 0);
  dt_client *c = connect_to(jc);
  assert_int_equal(sum_of_squares(c, 200, "slow_square", 20), want_sum(200));
  dt_cluster_info info;
  OK(dt_client_cluster_info(c, 5000, &info));
  assert_true(info.n_completed >= 200);
  assert_int_equal(wait_jobs(jc, 0, 60), 0); /* idle: back to zero */
  dt_client_close(c);
  dt_jobqueue_cluster_close(jc);
  assert_int_equal(queue_length(), 0);
}

static void test_slurm_adapt(void **state) {
  (void)state;
  adapt_cycle(DT_JOBQUEUE_SLURM);
}
static void test_pbs_adapt(void **state) {
  (void)state;
  adapt_cycle(DT_JOBQUEUE_PBS);
}

/* a job cancelled from outside mid-graph: the result is still right, and
 * the cluster replaces the job */
static void cancel_mid_graph(dt_jobqueue_system sys) {
  if (!have_slurm) skip();
  dt_jobqueue_opts o = opts_for(sys);
  dt_jobqueue_cluster *jc;
  OK(dt_jobqueue_cluster_start(&o, &jc));
  OK(dt_jobqueue_scale(jc, 2));
  OK(dt_jobqueue_wait_for_workers(jc, 2, 60000));
  dt_client *c = connect_to(jc);
  enum { N = 300 };
  dt_value *args[N];
  dt_future *fs[N];
  dt_value *vs[N];
  for (int i = 0; i < N; i++) args[i] = dt_list_of(2, dt_int(i), dt_int(10));
  OK(dt_client_map(c, "slow_square", args, N, &(dt_submit_opts){.pure = DT_NO}, fs));
  usleep(800000);
  char out[256] = "";
  char sq[200];
  snprintf(sq, sizeof(sq), "squeue -h --me -n %s -t RUNNING -o %%i | head -1", job_name(sys));
  FILE *f = popen(sq, "r");
  assert_non_null(f);
  assert_non_null(fgets(out, sizeof(out), f));
  pclose(f);
  out[strcspn(out, "\n")] = '\0';
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "%s %s", sys == DT_JOBQUEUE_PBS ? "qdel" : "scancel", out);
  assert_int_equal(system(cmd), 0);
  OK(dt_client_gather(c, fs, N, 120000, vs));
  int64_t s = 0;
  for (int i = 0; i < N; i++) {
    s += dt_value_int(vs[i]);
    dt_value_free(vs[i]);
    dt_future_release(fs[i]);
  }
  assert_int_equal(s, want_sum(N));
  assert_int_equal(wait_jobs(jc, 2, 30), 2); /* replaced */
  dt_client_close(c);
  dt_jobqueue_cluster_close(jc);
  assert_int_equal(queue_length(), 0);
}

static void test_slurm_cancel_mid_graph(void **state) {
  (void)state;
  cancel_mid_graph(DT_JOBQUEUE_SLURM);
}
static void test_pbs_cancel_mid_graph(void **state) {
  (void)state;
  cancel_mid_graph(DT_JOBQUEUE_PBS);
}

/* clear errors: no batch system, a refused submission, a job that never starts */
static void test_errors(void **state) {
  (void)state;
  char *path = strdup(getenv("PATH") ? getenv("PATH") : "");
  setenv("PATH", "/nonexistent", 1);
  dt_jobqueue_opts o = opts_for(DT_JOBQUEUE_PBS);
  dt_jobqueue_cluster *jc;
  assert_int_equal(dt_jobqueue_cluster_start(&o, &jc), DT_ENOTFOUND);
  assert_non_null(strstr(dt_last_error(), "qsub"));
  setenv("PATH", path, 1);
  free(path);
  if (!have_slurm) skip();
  o = opts_for(DT_JOBQUEUE_SLURM);
  o.queue = "nosuchqueue";
  OK(dt_jobqueue_cluster_start(&o, &jc));
  assert_int_equal(dt_jobqueue_scale(jc, 1), DT_ESPAWN);
  assert_non_null(strstr(dt_last_error(), "sbatch refused the job"));
  assert_non_null(strstr(dt_last_error(), "partition")); /* the batch system's own words */
  dt_jobqueue_cluster_close(jc);
  /* a held job never starts: waiting names it and Slurm's reason */
  o = opts_for(DT_JOBQUEUE_SLURM);
  o.submit_command_extra = (const char *[]){"--hold"};
  o.n_submit_command_extra = 1;
  o.job_start_timeout_ms = 1500;
  OK(dt_jobqueue_cluster_start(&o, &jc));
  OK(dt_jobqueue_scale(jc, 1));
  assert_int_equal(dt_jobqueue_wait_for_workers(jc, 1, 20000), DT_ETIMEDOUT);
  assert_non_null(strstr(dt_last_error(), "did not start in time"));
  assert_non_null(strstr(dt_last_error(), "pending"));
  dt_jobqueue_cluster_close(jc);
  assert_int_equal(queue_length(), 0);
}

int main(void) {
  const char *b = getenv("DTASK_BIN"), *p = getenv("DTASK_PRELOAD_LIB");
  if (!b || !p) {
    fprintf(stderr, "run through ctest (DTASK_BIN, DTASK_PRELOAD_LIB)\n");
    return 1;
  }
  snprintf(bin, sizeof(bin), "%s", b);
  snprintf(preload, sizeof(preload), "%s", p);
  have_slurm = system("sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed|alloc'") == 0;
  /* the clusters keep their scripts, secrets and job logs under $HOME/.dtask:
   * a scratch HOME, removed at the end */
  char home[64] = "/tmp/dtask-hpc-XXXXXX";
  if (!mkdtemp(home)) return 1;
  setenv("HOME", home, 1);
  if (!have_slurm)
    fprintf(stderr, "hpc_test: no Slurm running here (scripts/start-slurm.sh): the tests on real "
                    "jobs are skipped\n");
  if (getenv("DT_TEST_FILTER")) cmocka_set_test_filter(getenv("DT_TEST_FILTER"));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_job_scripts),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_slurm_scale_run_shrink),
      cmocka_unit_test(test_pbs_scale_run_shrink),
      cmocka_unit_test(test_slurm_adapt),
      cmocka_unit_test(test_pbs_adapt),
      cmocka_unit_test(test_slurm_cancel_mid_graph),
      cmocka_unit_test(test_pbs_cancel_mid_graph),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", home);
  if (system(cmd) != 0 && rc == 0) rc = 1;
  return rc;
}
