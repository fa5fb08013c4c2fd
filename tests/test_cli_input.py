"""fleet-coord refuses bad input before it talks to a fleet: each error names the
argument and what was expected, exit status 2, no traceback (no fleet runs here)."""
import pytest

from fleet_coord.cli import main


@pytest.mark.parametrize("argv, words", [
    (["submit", "t1", "--stations", "1,1", "--deadline", "nan"], ["--deadline", "finite"]),
    (["submit", "t1", "--stations", "1,1", "--deadline", "1e300"], ["--deadline", "<= 315360000"]),
    (["submit", "t1", "--stations", "1,1", "--deadline", "-5"], ["--deadline", ">= 0"]),
    (["submit", "t1", "--stations", "1,1", "--payload", "inf"], ["--payload", "kg"]),
    (["submit", "t1", "--stations", "1,1", "--priority", "2147483648"], ["--priority", "2147483647"]),
    (["submit", "t1", "--stations", "1,1", "--timeout", "0"], ["--timeout", "> 0"]),
    (["submit", "x" * 1_000_000, "--stations", "1,1"], ["task id", "at most 128 bytes"]),
    (["submit", "red\x1b[31m", "--stations", "1,1"], ["task id", "printable", "U+001B"]),
    (["submit", "tab\tid", "--stations", "1,1"], ["task id", "printable"]),
    (["submit", "t1", "--stations", "1,1", "bad\nname"], ["--stations[1]", "printable"]),
    (["add-robot", "r9", "--station", "1,1", "--max-speed", "nan"], ["--max-speed"]),
    (["add-robot", "r9", "--station", "1,1", "--theta", "inf"], ["--theta"]),
    (["add-robot", "r9", "--station", "1,1", "--domain", "999"], ["--domain", "<= 232"]),
])
def test_bad_arguments_are_refused_naming_them(capsys, argv, words):
    try:
        rc = main(argv)
    except SystemExit as e:   # argparse's own refusal
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err
    assert len(err) < 2000   # a 1 MB id is named by its start, not printed whole
