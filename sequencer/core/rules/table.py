"""The rule tables: which ``process_*`` function applies each record kind,
one immutable table per log schema version (sequencer.core.presets
.SCHEMA_VERSION), built here and nowhere else.

The next protocol version is a new table (py-evm's forks): copy the previous
one, replace what changed, add it to ``RULE_TABLES``.  Nothing edits a table
after this module is imported.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from sequencer.core.records import (AdjustMargin, CancelOrder, Deposit, ForcedClose, ForcedWithdrawal, FundingTick,
                                    Liquidate, OraclePrice, PlaceOrder, Trade, Transfer, Withdraw)
from sequencer.core.rules.accounts import process_deposit, process_forced_withdrawal, process_transfer, process_withdraw
from sequencer.core.rules.base import Rule
from sequencer.core.rules.funding import process_funding_tick, process_oracle_price
from sequencer.core.rules.liquidation import process_forced_close, process_liquidate
from sequencer.core.rules.orders import process_cancel_order, process_place_order
from sequencer.core.rules.positions import process_adjust_margin
from sequencer.core.rules.trades import process_trade
from sequencer.core.records import VaultDeposit, VaultUnwind, VaultWithdraw
from sequencer.core.rules.vault import process_vault_deposit, process_vault_unwind, process_vault_withdraw
from sequencer.core.records import AuctionBid, AuctionEnd
from sequencer.core.rules.auction import process_auction_bid, process_auction_end
from sequencer.core.records import ModifyOrder, PlaceTrigger, ScheduleCancel, ScheduledCancelAll, TriggerFire
from sequencer.core.rules.orders import process_modify_order, process_modify_order_v4
from sequencer.core.rules.triggers import (process_place_trigger, process_schedule_cancel,
                                           process_scheduled_cancel_all, process_scheduled_cancel_all_v4,
                                           process_trigger_fire)

RuleTable = Mapping[type, Rule]

RULES_V1: RuleTable = MappingProxyType({
    Transfer: process_transfer,
    Withdraw: process_withdraw,
    AdjustMargin: process_adjust_margin,
    PlaceOrder: process_place_order,
    CancelOrder: process_cancel_order,
    Trade: process_trade,
    FundingTick: process_funding_tick,
    Liquidate: process_liquidate,
    OraclePrice: process_oracle_price,
    Deposit: process_deposit,
    ForcedWithdrawal: process_forced_withdrawal,
    # ForcedClose (tag 50) is a kind no log written before it holds (the watcher
    # stopped at a forced close instead of copying it), so adding it to v1
    # changes no replay of an existing log.
    ForcedClose: process_forced_close,
    # The backstop vault (tags 6, 7, 21): new kinds, in no existing log.
    VaultDeposit: process_vault_deposit,
    VaultWithdraw: process_vault_withdraw,
    VaultUnwind: process_vault_unwind,
    # The liquidation auction (tags 8, 23): new kinds, in no existing log.
    AuctionBid: process_auction_bid,
    AuctionEnd: process_auction_end,
    # Trigger orders, modify and the dead-man's switch (tags 9-11, 19, 20): new
    # kinds, in no existing log.
    PlaceTrigger: process_place_trigger,
    ModifyOrder: process_modify_order,
    ScheduleCancel: process_schedule_cancel,
    TriggerFire: process_trigger_fire,
    ScheduledCancelAll: process_scheduled_cancel_all,
})

from sequencer.core.rules.auction import process_auction_end_v2
from sequencer.core.rules.liquidation import process_forced_close_v2, process_liquidate_v2

RULES_V2: RuleTable = MappingProxyType({
    **RULES_V1,
    # A liquidation, an auction's end and a forced close cancel the owner's
    # orders in the market with one write (the position's order epoch) instead
    # of one an order, and a Liquidate names at most 4 makers: the witness of
    # each is bounded, so L1 re-executes them (docs/fraud-proofs.md).
    Liquidate: process_liquidate_v2,
    AuctionEnd: process_auction_end_v2,
    ForcedClose: process_forced_close_v2,
})

from sequencer.core.records import Deleverage
from sequencer.core.rules.auction import process_auction_end_v3
from sequencer.core.rules.liquidation import process_deleverage, process_forced_close_v3, process_liquidate_v3

RULES_V3: RuleTable = MappingProxyType({
    **RULES_V2,
    # The ladder closes only against the opposite positions a Deleverage record
    # names (at most 6), never against every position ranked: a Liquidate and
    # an AuctionEnd stop where it starts, and a forced close goes to the
    # insurance fund at the mark.  Every witness is bounded (docs/fraud-proofs.md).
    Liquidate: process_liquidate_v3,
    AuctionEnd: process_auction_end_v3,
    ForcedClose: process_forced_close_v3,
    Deleverage: process_deleverage,
})

RULES_V4: RuleTable = MappingProxyType({
    **RULES_V3,
    # The dead-man's switch cancels the account's orders by its order epoch in
    # every market (one position leaf a market) instead of one flag an order:
    # its witness no longer grows with the orders, so L1 re-executes it for
    # every account (docs/fraud-proofs.md).
    ScheduledCancelAll: process_scheduled_cancel_all_v4,
    # A ModifyOrder of an order its owner's epoch cancelled is refused
    # (order_not_open), as v1-v3 refused one the switch had flagged: a
    # relayed modify signed before the switch fired cannot revive the quote.
    ModifyOrder: process_modify_order_v4,
})

RULE_TABLES: Mapping[int, RuleTable] = MappingProxyType({1: RULES_V1, 2: RULES_V2, 3: RULES_V3, 4: RULES_V4})


def get_rules(schema_version: int) -> RuleTable:
    """The rule table of a log schema version; ValueError for one this executor
    does not know (it must stop: skipping records would fork the state)."""
    try:
        return RULE_TABLES[schema_version]
    except KeyError:
        raise ValueError(f"no rules for log schema version {schema_version}; "
                         f"this executor knows {', '.join(map(str, RULE_TABLES))}") from None
