"""The residual helpers of the resident schedule: a row split aligned with the producer's
rows (`mrvl_tile_split.aligned_rows`) and the per-consumer groups of a resident tensor
(`mlip_residency`)."""

from __future__ import annotations

from dataclasses import replace

from mrvl.lowering.mlip_conv_blocking import ConvGeom
from mrvl.lowering.mlip_ocm_alloc import Resident
from mrvl.lowering.mlip_residency import _orders
from mrvl.lowering.mrvl_tile_split import aligned_rows

SEVEN = [(7 * t, 7 * t + 7) for t in range(8)]  # a 56-row tensor in 8 bands of 7 rows


def _geom(**fields) -> ConvGeom:
    base = ConvGeom(n=1, h=56, w=56, c=256, o=128, kh=1, kw=1, cg=256, oh=56, ow=56,
                    groups=1, sh=1, sw=1, pt=0, pl=0, dh=1, dw=1, es=2, w_es=2, in_es=2,
                    out_es=2, consts=1, sig8=False)
    return replace(base, **fields)


def test_a_pointwise_conv_keeps_its_producers_rows():
    assert aligned_rows(_geom(), SEVEN, 56 * 128 * 2) == SEVEN


def test_a_strided_pointwise_conv_reads_only_its_own_tiles_rows():
    # a 1x1 stride-2 conv gathers rows 0, 2, 4, ...: output row r reads input row 2r, so
    # tile t takes the outputs whose input row lies in its 7 rows: 4, 3, 4, 3, ... rows
    geom = _geom(h=28, w=28, src_h=56, src_w=56, ys=2, xs=2, oh=28, ow=28, o=512)
    ranges = aligned_rows(geom, SEVEN, 28 * 512 * 2)
    assert ranges == [(0, 4), (4, 7), (7, 11), (11, 14), (14, 18), (18, 21), (21, 25),
                      (25, 28)]
    for (lo, hi), (a, b) in zip(ranges, SEVEN, strict=True):
        assert all(a <= 2 * r < b for r in range(lo, hi))


def test_a_conv_whose_window_crosses_bands_has_no_aligned_split():
    # a 3x3 conv's output row 6 reads input rows 5..7, held by tiles 0 and 1
    assert aligned_rows(_geom(kh=3, kw=3, pt=1, pl=1), SEVEN, 56 * 128 * 2) is None


def test_an_aligned_split_keeps_granule_boundaries():
    # output rows of 5 pixels x 3 fp16 channels (30 bytes) split in units of 8 rows (whole
    # 16-byte granules); the aligned boundaries 7, 14, ... are not multiples of 8
    assert aligned_rows(_geom(o=3, ow=5), SEVEN, 5 * 3 * 2) is None


def test_local_orders_resort_only_the_buffers_live_with_the_new_one():
    labels = ["a", "b", "c", "new"]
    requests = [Resident(100, 0, 1), Resident(50, 2, 3), Resident(200, 3, 5),
                Resident(300, 3, 4)]
    orders = list(_orders(labels, requests, requests[-1]))
    assert orders[0] == (labels, requests)  # first as chosen
    for order, reqs in orders[1:]:
        assert order[0] == "a"  # not live at 3..4: keeps its place
        assert sorted(order) == sorted(labels)
        assert [requests[labels.index(x)] for x in order] == reqs
    # longest-lived first, then earliest first, then largest first
    assert [order for order, _ in orders[1:]] == [["a", "c", "new", "b"],
                                                 ["a", "b", "new", "c"],
                                                 ["a", "new", "c", "b"]]
