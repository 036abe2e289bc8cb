"""At the end of a sync: the delta objects this sync wrote to a channel, merged into one.

A re-sync's flushes (the member index's write-ahead rule) write a delta object per upload: dozens
even with group commit (``state/uploads.py``). Left as they are, the next sync would read each one,
and their count alone would make a compaction of the whole base due at this sync's end (reading,
merging and writing every member of the program to save a few hundred changes). Merged into one
delta, they cost the next sync one read, and a compaction comes when the program's deltas (one per
sync) call for it.

**Why it is safe.** The merge keeps, for every key, the record that ``state/merge.py`` makes win:
a join (the later version wins; at one version, the record that knows less), so merging some
deltas first gives every reader exactly what merging them all with the rest would. The merged
object is written (a new name, ``If-None-Match: *``) before the ones it replaces are deleted, so
a reader always finds each record in one of them: a reader that listed an object deleted since
starts its read again (``state/snapshot.py``), and an object that could not be deleted is merged
again later, harmlessly. Another sync's compaction racing this one merges either copy, both say
the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import ExitStack

from destination_crowdtwist.state.bucket import Bucket, remove
from destination_crowdtwist.state.codec import CreditRecord, MemberRecord
from destination_crowdtwist.state.layout import Channel
from destination_crowdtwist.state.snapshot import ChannelState, merged

#: Uploads a delta object of the channel with these records (the store's own, which records it in the state).
PutDelta = Callable[[Channel, Iterable[MemberRecord | CreditRecord]], None]


def merge_own_deltas(bucket: Bucket, state: ChannelState, session: str, put_delta: PutDelta) -> int:
    """Merge the deltas of ``session`` in ``state`` into one new delta; the number of objects it replaced.

    Storage failures propagate (the caller logs them: nothing is lost, the deltas stay as they are).
    """
    own = [key for key in state.deltas if f"-{session}-" in key and key in state.copies]
    if len(own) < 2:
        return 0
    part = ChannelState(state.channel, state.expected, copies={key: state.copies[key] for key in own}, deltas=own)
    with ExitStack() as files:
        put_delta(state.channel, merged(part, files))
    gone = bucket.delete_many(own)
    for key in own:
        if key in gone:
            state.deltas.remove(key)
            copy = state.copies.pop(key, None)
            remove(copy.path if copy else None)
    return len(gone)
