"""Issue 12: JSON decision rules must never return an incentive the caller's mask excludes."""

import numpy as np

from policies.rules import first_allowed


def test_first_allowed_honours_mask_when_no_preference_allowed() -> None:
    rng = np.random.default_rng(0)
    n, k = 500, 6
    masks = rng.random((n, k)) < 0.5
    masks[np.arange(n), rng.integers(0, k, n)] = True  # every row allows something
    prefs = np.tile(np.array([[3, 4]]), (n, 1))
    ids = first_allowed(prefs, masks)
    assert masks[np.arange(n), ids].all()
    both_barred = ~masks[:, 3] & ~masks[:, 4]
    assert both_barred.any()
    np.testing.assert_array_equal(ids[both_barred], np.argmax(masks[both_barred], axis=1))
