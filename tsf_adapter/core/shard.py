"""Which replica keeps a series: the split Prometheus's ``hashmod`` relabelling makes.

Replicas of the daemon split a large estate between them, each keeping the series whose hash of
some label values falls in its shard. The hash is exactly Prometheus's ``hashmod`` action (the MD5
of the label values joined by ``;``, its last eight bytes read as a big-endian integer, modulo the
number of shards), so a Prometheus configured with one ``write_relabel_configs`` ``hashmod`` rule
per ``remote_write`` entry sends each replica only its share, and a replica sent everything (or
backfilled from a remote-read of everything) keeps the same share on its own.

>>> [hashmod([user], 3) for user in ("alice", "dave", "frank")]
[1, 0, 2]
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from tsf_adapter.core.series import Labels

SEPARATOR: Final = ";"  # Prometheus's default relabel separator
# Where the hash goes while the rules run. Unlike a scrape's relabelling, write relabelling keeps
# labels starting with __, so the rules drop it again (a real Prometheus 2.42 sent it otherwise).
TEMP_LABEL: Final = "__tmp_tsf_shard"


def hashmod(values: Sequence[str], modulus: int) -> int:
    """Prometheus's ``hashmod`` of source label values (absent labels are ``""``)."""
    digest = hashlib.md5(SEPARATOR.join(values).encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % modulus


@dataclass(frozen=True, slots=True)
class Shard:
    """Replica ``index`` of ``total``, splitting series by the values of ``labels``."""

    index: int
    total: int
    labels: tuple[str, ...]

    def keeps(self, labels: Labels) -> bool:
        """Whether this replica keeps the series ``labels``.

        >>> s = Shard(1, 3, ("user",))
        >>> s.keeps((("__name__", "used"), ("user", "alice"))), s.keeps((("user", "dave"),))
        (True, False)
        """
        if self.total == 1:
            return True
        values = dict(labels)
        return hashmod([values.get(name, "") for name in self.labels], self.total) == self.index

    def write_relabel_configs(self) -> list[dict[str, object]]:
        """The rules that make a Prometheus ``remote_write`` entry send this replica only its share
        (append them to the entry's own ``write_relabel_configs``).

        >>> Shard(2, 3, ("user",)).write_relabel_configs()[1]
        {'source_labels': ['__tmp_tsf_shard'], 'regex': '2', 'action': 'keep'}
        """
        return [
            {
                "source_labels": list(self.labels),
                "modulus": self.total,
                "target_label": TEMP_LABEL,
                "action": "hashmod",
            },
            {"source_labels": [TEMP_LABEL], "regex": str(self.index), "action": "keep"},
            {"regex": TEMP_LABEL, "action": "labeldrop"},
        ]
