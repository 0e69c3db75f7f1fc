"""Referral: bonuses send invitations through the social graph and acquire new shoppers.

A shopper given a referral bonus invites each friend she has not invited yet with her referral
propensity; each invitation is accepted with ``accept_rate``. Her friends are finite:
``max_invites`` over her whole life, so repeating the bonus reaches fewer and fewer new
friends instead of an endless supply (without the cap, a bonus at every login doubled a
20,000-customer shop in 90 days). Accepted friends
join the next day as new shoppers, marked as referred and placed in the referrer's community
(their first neighbour is the referrer), with a first order. Schmitt, Skiera & Van den Bulte
(2011) find referred customers about 18% less likely to churn and worth about 16% more, so
referred shoppers' BG/NBD dropout is cut by ``referred_churn_reduction``. The bonus is paid
to the referrer only when the friend's first order reaches the incentive's ``min_basket``:
the anti-fraud floor. Abusers given a bonus also open ``abuser_fake_accounts`` fake accounts,
each with a first order of ``fake_order_value`` that never returns. A floor above that value
makes the bonus unreachable for the fakes, so the abuser doesn't bother. Neutral:
``accept_rate: 0``, ``abuser_fake_accounts: 0``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


def accepted_invitations(
    propensity: F64, invites_left: I64, accept_rate: float, rng: np.random.Generator
) -> tuple[I64, I64]:
    """Invitations sent, Binomial(friends not yet invited, propensity), and how many are accepted."""
    invites = rng.binomial(invites_left, propensity).astype(np.int64)
    return invites, rng.binomial(invites, accept_rate).astype(np.int64)


def fake_accounts(abuser: NDArray[np.bool_], floor: F64, fake_order_value: float, per_abuser: int) -> I64:
    """Fake referrals each referrer opens: abusers do when a fake first order clears the floor."""
    return np.where(abuser & (floor <= fake_order_value), per_abuser, 0).astype(np.int64)
