"""Each checker of kvcore-robust accepts a correct history and catches the bug it is
for: a lost write, a dropped, duplicated, reordered or split watch event, a wrong
prev_kv, a progress notification that goes back."""
from kvcore.robust.checkers import (Event, Response, WatchRecord, lost_writes,
                                    replay_problems, watch_problems)

HISTORY = [Event(5, "a", "put", "1", None), Event(6, "b", "put", "x", None),
           Event(6, "a", "put", "2", "1"), Event(7, "a", "delete", None, "2"),
           Event(8, "a", "put", "3", None)]


def _record(*batches, start=5, progress_at=()):
    rec = WatchRecord(0, start)
    for b in batches:
        rec.responses.append(Response(list(b), max(e.rev for e in b)))
    for rev in progress_at:
        rec.responses.append(Response([], rev, True))
    return rec


def test_a_faithful_watcher_passes():
    rec = _record(HISTORY[:1], HISTORY[1:3], HISTORY[3:], progress_at=(8,))
    assert watch_problems(rec, HISTORY) == []
    assert replay_problems(HISTORY) == []


def test_a_watcher_that_started_late_or_stopped_early_passes():
    assert watch_problems(_record(HISTORY[1:3], start=6), HISTORY) == []
    assert watch_problems(_record(HISTORY[:1], HISTORY[1:3]), HISTORY) == []


def test_dropped_event_is_caught():
    rec = _record(HISTORY[:1], HISTORY[3:])          # revision 6 never delivered
    assert any("differ from the history" in p for p in watch_problems(rec, HISTORY))


def test_duplicated_event_is_caught():
    rec = _record(HISTORY[:1], HISTORY[1:3], HISTORY[2:3], HISTORY[3:])
    assert any("delivered twice" in p for p in watch_problems(rec, HISTORY))


def test_reordered_events_are_caught():
    rec = _record(HISTORY[:1], HISTORY[3:4], HISTORY[1:3], HISTORY[4:])
    assert any("not ordered" in p for p in watch_problems(rec, HISTORY))


def test_revision_split_across_responses_is_caught():
    rec = _record(HISTORY[:1], HISTORY[1:2], HISTORY[2:3], HISTORY[3:])
    assert any("split across responses" in p for p in watch_problems(rec, HISTORY))


def test_wrong_prev_kv_is_caught():
    bad = Event(6, "a", "put", "2", "stale")
    rec = _record(HISTORY[:1], [HISTORY[1], bad], HISTORY[3:])
    assert any("prev_kv" in p for p in watch_problems(rec, HISTORY))
    assert any("prev_kv" in p for p in replay_problems([HISTORY[0], HISTORY[1], bad]))


def test_progress_notification_going_back_is_caught():
    rec = _record(HISTORY[:1], HISTORY[1:3], progress_at=(7, 6))
    assert any("progress notification" in p for p in watch_problems(rec, HISTORY))
    # an event at or below a progress notification's revision after it
    rec = _record(HISTORY[:1], progress_at=(6,))
    rec.responses.append(Response(HISTORY[1:3], 6))
    assert any("after a progress notification" in p for p in watch_problems(rec, HISTORY))


def test_lost_acknowledged_write_is_caught():
    assert lost_writes([("a", "1"), ("a", "3")], HISTORY) == []
    assert lost_writes([("a", "9")], HISTORY) == ["acknowledged put a=9 is not in the history"]
    # a put acknowledged for one key is not vouched for by the same value on another
    assert lost_writes([("b", "1")], HISTORY)
