"""dtask's job_script() against dask-jobqueue's for the same arguments,
directive by directive: the shebang, every #SBATCH/#PBS line in order, the
prologue lines, the python and the worker's options (the worker program
differs by design: `python -m dtask worker` instead of
`distributed.cli.dask_worker`).  Shared by test_jobqueue.py and
test_jobqueue_docs.py."""


def _split_script(script):
    lines = script.rstrip("\n").split("\n")
    directives = [ln for ln in lines if ln.startswith(("#SBATCH", "#PBS"))]
    command = lines[-1]
    prologue = [ln for ln in lines[1:-1] if ln and not ln.startswith("#")]
    return lines[0], directives, prologue, command


def _cmd_options(command):
    """the worker command's options after the address, without the program
    and the pieces only one side has (dtask's auth file)."""
    parts = command.split()
    i = parts.index("-m")
    rest = parts[i + 2:]
    if rest and rest[0] == "worker":  # `-m dtask worker`
        rest = rest[1:]
    rest = rest[1:]  # the address
    out, j = [], 0
    while j < len(rest):
        if rest[j] == "--auth-file":
            j += 2
            continue
        out.append(rest[j])
        j += 1
    return out


def assert_same_job_script(ours, theirs, what="job_script()"):
    """Asserts dtask's script `ours` matches dask-jobqueue's `theirs`;
    returns their worker command lines (ours, theirs)."""
    t_sh, t_dir, t_pro, t_cmd = _split_script(theirs)
    o_sh, o_dir, o_pro, o_cmd = _split_script(ours)
    assert o_sh == t_sh
    assert o_dir == t_dir, f"{what}: directives differ"  # directive by directive, in order
    assert o_pro == t_pro
    assert _cmd_options(o_cmd) == _cmd_options(t_cmd), (o_cmd, t_cmd)
    assert o_cmd.split()[0] == t_cmd.split()[0]  # the same python
    assert " -m dtask worker " in o_cmd
    return o_cmd, t_cmd
