"""The seed document's example, with only the import line changed."""

import subprocess
import sys
import textwrap

SEED = textwrap.dedent("""
    from dtask import Client, LocalCluster

    # Set up a local cluster with a specific number of workers
    cluster = LocalCluster(n_workers=4)

    # Connect to the local cluster
    client = Client(cluster)

    # Submit a task to the local cluster
    future = client.submit(lambda x: x + 1, 10)

    # Get the result once the task is complete
    result = future.result()
    print(result)
""")


def test_seed_example_prints_11(tmp_path):
    script = tmp_path / "seed.py"
    script.write_text(SEED)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "11"


def test_client_without_arguments_starts_a_cluster(tmp_path):
    script = tmp_path / "default.py"
    script.write_text("from dtask import Client\n"
                      "with Client(n_workers=1, dashboard_address=None) as c:\n"
                      "    print(c.submit(sum, [1, 2, 3]).result(), len(c.nthreads()))\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["6", "1"]
