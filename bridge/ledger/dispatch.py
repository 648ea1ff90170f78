"""A command's ``dispatched`` entry follows its calls: written (and acknowledged) before an attempt,
withdrawn (a tombstone) after an attempt that rules an effect out while none before it may have had
one. So a command abandoned while every attempt so far was refused (no connection, 503, 429, 401) is
new to the next owner, not in doubt (issue 25.3); once an attempt may have applied, the entry stays.

Example::

    dispatch = LedgerDispatch(ledger, ticket, written=ticket.admission is Admission.IN_DOUBT)
    decision = await executor.execute(runtime, command, dispatch=dispatch)
"""

from __future__ import annotations

from bridge.kafka.fence import check_owner
from bridge.ledger.store import Ledger, Ticket


class LedgerDispatch:
    def __init__(self, ledger: Ledger, ticket: Ticket, *, written: bool = False) -> None:
        self._ledger = ledger
        self._ticket = ticket
        self.written = written  # an in-doubt command's entry is there already

    async def sending(self) -> None:
        if not self.written:
            check_owner()  # no entry for a partition this member lost
            await self._ledger.dispatched(self._ticket)  # acknowledged before the call
            self.written = True

    async def refused(self) -> None:
        if self.written:
            check_owner()
            await self._ledger.withdraw(self._ticket)
            self.written = False
