"""Human preference judgments in a database (SQLAlchemy): what ``rlhf-env label`` records.

One row per judgment: the prompt, the responses shown (in the order shown), the policy and
checkpoint that sampled them with the sampling settings, the labeller, the choice and the time.
A judgment is committed when it is made, so killing the labelling server loses nothing already
clicked. The database is any SQLAlchemy URL: SQLite by default (``sqlite:///runs/labels.db``, in WAL
mode so readers, e.g. a training run, never block the labelling server), or a shared server
(``postgresql://...``).

Choices: ``ranked`` (``ranking`` holds the response indices best first: for a pair ``[0, 1]``
means the first is better), ``tie``, ``both_bad`` and ``skip``. Only ranked judgments are
preferences; :func:`preference_rows` turns them into the rows of
:mod:`rlhf_env.data.preferences` (``{prompt, chosen, rejected}`` for a pair, ``{prompt,
responses: [best, ..., worst]}`` for K > 2), and :func:`load_database_preferences` is what
``load_preferences("sqlite:///runs/labels.db")`` reads. Its held-out split is every 10th
*comparison*, so the judgments of several labellers on one comparison never straddle the split.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from rlhf_env.data.tables import check_split

RANKED, TIE, BOTH_BAD, SKIP = "ranked", "tie", "both_bad", "skip"
CHOICES = (RANKED, TIE, BOTH_BAD, SKIP)
MAX_LABELLER_LENGTH = 64
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+]*://")


class JudgmentError(ValueError):
    """A judgment that cannot be stored; the message says what is wrong."""


@dataclass(frozen=True)
class Comparison:
    """Responses to one prompt shown side by side, with where they came from."""

    prompt: str
    responses: tuple[str, ...]
    policy: str
    task: str
    sampling: dict[str, Any]
    checkpoint: str | None = None
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)


class _Base(DeclarativeBase):
    pass


class Judgment(_Base):
    """One labeller's judgment of one comparison (the module docstring)."""

    __tablename__ = "judgments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    comparison: Mapped[str] = mapped_column(String(32), index=True)
    prompt: Mapped[str] = mapped_column(Text)
    responses: Mapped[list] = mapped_column(JSON)
    choice: Mapped[str] = mapped_column(String(16))
    ranking: Mapped[list | None] = mapped_column(JSON, nullable=True)
    labeller: Mapped[str] = mapped_column(String(MAX_LABELLER_LENGTH), index=True)
    policy: Mapped[str] = mapped_column(Text)
    checkpoint: Mapped[str | None] = mapped_column(Text, nullable=True)
    task: Mapped[str] = mapped_column(Text)
    sampling: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    @property
    def time(self) -> datetime:
        """``created_at`` in UTC (SQLite hands it back without its time zone)."""
        created = self.created_at
        return created if created.tzinfo else created.replace(tzinfo=UTC)

    def to_comparison(self) -> Comparison:
        return Comparison(
            prompt=self.prompt,
            responses=tuple(self.responses),
            policy=self.policy,
            task=self.task,
            sampling=dict(self.sampling),
            checkpoint=self.checkpoint,
            uid=self.comparison,
        )


def is_database_url(source: Any) -> bool:
    """Whether ``source`` is a SQLAlchemy database URL (``sqlite:///runs/labels.db``, ...)."""
    if not isinstance(source, str) or not _URL.match(source):
        return False
    try:
        make_url(source).get_dialect()
    except (ArgumentError, NoSuchModuleError):
        return False
    return True


def check_ranking(ranking: Sequence[int], k: int) -> list[int]:
    """``ranking`` as a list if it orders each of ``k`` responses once, else a JudgmentError."""
    ranking = [int(i) for i in ranking]
    if sorted(ranking) != list(range(k)):
        raise JudgmentError(
            f"a ranking must list each of the {k} responses once (indices 0..{k - 1}, best "
            f"first), got {ranking}"
        )
    return ranking


class JudgmentStore:
    """The judgments of one database (any SQLAlchemy URL; SQLite files in WAL mode)."""

    def __init__(self, url: str, *, create: bool = True):
        """``create=False`` (readers) refuses a SQLite file that does not exist yet instead of
        creating an empty database there."""
        if not is_database_url(url):
            raise JudgmentError(
                f"{url!r} is not a database URL; give e.g. sqlite:///runs/labels.db or "
                "postgresql://user@host/db"
            )
        self.url = url
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            if not create and not Path(parsed.database).is_file():
                raise FileNotFoundError(
                    f"no judgments database at {parsed.database} ({url}); label into it with "
                    "`rlhf-env label serve --db URL`"
                )
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)  # runs/, fresh clone
        self.engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        _Base.metadata.create_all(self.engine)

    def record(
        self,
        comparison: Comparison,
        labeller: str,
        choice: str,
        ranking: Sequence[int] | None = None,
    ) -> int:
        """Store a judgment and commit it; return its id."""
        if choice not in CHOICES:
            raise JudgmentError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
        if (ranking is not None) != (choice == RANKED):
            raise JudgmentError(f"a ranking goes with choice {RANKED!r} and only with it")
        if ranking is not None:
            ranking = check_ranking(ranking, len(comparison.responses))
        row = Judgment(
            comparison=comparison.uid,
            prompt=comparison.prompt,
            responses=list(comparison.responses),
            choice=choice,
            ranking=ranking,
            labeller=check_labeller(labeller),
            policy=comparison.policy,
            checkpoint=comparison.checkpoint,
            task=comparison.task,
            sampling=dict(comparison.sampling),
            created_at=datetime.now(UTC),
        )
        with Session(self.engine) as session, session.begin():
            session.add(row)
            session.flush()
            return row.id

    def undo_last(self, labeller: str) -> Comparison | None:
        """Delete ``labeller``'s latest judgment (committed); return its comparison, or None."""
        with Session(self.engine) as session, session.begin():
            row = session.scalars(
                select(Judgment)
                .where(Judgment.labeller == labeller)
                .order_by(Judgment.id.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            comparison = row.to_comparison()
            session.delete(row)
            return comparison

    def count(self, labeller: str | None = None) -> int:
        """Judgments stored (by ``labeller``, or by everyone)."""
        query = select(func.count(Judgment.id))
        if labeller is not None:
            query = query.where(Judgment.labeller == labeller)
        with Session(self.engine) as session:
            return session.scalar(query)

    def judgments(self) -> list[Judgment]:
        """Every judgment, oldest first (detached rows, safe to read after the session)."""
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(select(Judgment).order_by(Judgment.id)))

    def open_comparisons(self, labels_per_comparison: int) -> list[tuple[Comparison, set[str]]]:
        """Comparisons judged fewer than ``labels_per_comparison`` times, with who judged them
        (what a restarted server serves again before sampling new ones)."""
        seen: dict[str, tuple[Comparison, set[str]]] = {}
        for row in self.judgments():
            seen.setdefault(row.comparison, (row.to_comparison(), set()))[1].add(row.labeller)
        return [item for item in seen.values() if len(item[1]) < labels_per_comparison]


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def check_labeller(name: str) -> str:
    """A labeller's name, stripped: 1 to 64 printable characters."""
    name = (name or "").strip()
    if not 1 <= len(name) <= MAX_LABELLER_LENGTH or not name.isprintable():
        raise JudgmentError(
            f"a labeller's name must be 1 to {MAX_LABELLER_LENGTH} printable characters, "
            f"got {name!r}"
        )
    return name


def preference_rows(judgments: Sequence[Judgment]) -> list[dict[str, Any]]:
    """The ranked judgments as preference rows (module docstring), each with its comparison,
    labeller, policy and checkpoint as extra columns."""
    rows = []
    for row in judgments:
        if row.choice != RANKED:
            continue
        ordered = [row.responses[i] for i in row.ranking]
        preference = (
            {"chosen": ordered[0], "rejected": ordered[1]}
            if len(ordered) == 2
            else {"responses": ordered}
        )
        rows.append(
            {
                "prompt": row.prompt,
                **preference,
                "comparison": row.comparison,
                "labeller": row.labeller,
                "policy": row.policy,
                "checkpoint": row.checkpoint,
            }
        )
    return rows


def load_database_preferences(url: str, split: str = "all") -> list[dict[str, Any]]:
    """The preference rows of a database's ranked judgments; ``"test"`` is every 10th
    comparison (in the order first judged), ``"train"`` the others."""
    check_split(split)
    rows = preference_rows(JudgmentStore(url, create=False).judgments())
    if not rows:
        raise JudgmentError(
            f"{url} holds no ranked judgments yet; label some with `rlhf-env label serve`"
        )
    if split == "all":
        return rows
    order: dict[str, int] = {}
    for row in rows:
        order.setdefault(row["comparison"], len(order))
    return [row for row in rows if (order[row["comparison"]] % 10 == 0) == (split == "test")]
