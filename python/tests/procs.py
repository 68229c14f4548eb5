"""The process table from /proc, for tests that check the engine leaves nothing behind. The tests
read it themselves rather than through the watchdog's own helper: that is the code under test."""

import os

# Fields of /proc/PID/stat after the command name, counted from 0: state, parent pid, group id.
_STATE, _PPID, _PGRP = 0, 1, 2


def _live_where(field, value):
    """Live (non-zombie) pids whose stat field `field` equals `value`."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue  # gone while we looked
        # The command may contain spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[field]) == value and fields[_STATE] != "Z":
            out.append(int(name))
    return out


def group_members(pgid):
    """Live processes in a process group."""
    return _live_where(_PGRP, pgid)


def children_of(ppid):
    """Live direct children of a process."""
    return _live_where(_PPID, ppid)
