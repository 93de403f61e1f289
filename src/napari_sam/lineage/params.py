"""Parameters of the lineage rules (divisions, gap closing, leaving the field). The automatic
tracker's ``TrackingParams`` inherits them (one place for both). Lengths in pixels, times in frames."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LineageParams:
    """Defaults suit the generated time-lapse sample (nuclei of radius ~10 px, ~1-2 px/frame).

    * ``divisions`` (True): look for divisions at all (False: a track never branches).
    * ``split_min_area`` (25 px): a part of a mask smaller than this is debris, not a daughter.
    * ``split_min_ratio`` (0.4): the smaller daughter has at least this share of the larger's
      area ("comparable size"; a division gives two of about the same size).
    * ``split_min_separation`` (2.0 px): the daughters' nearest pixels are at least this many
      empty pixels apart (nearest pixel centres' distance minus 1); 0 accepts touching parts.
    * ``split_min_cover`` (0.7): for a re-detection split, the share of each detection that
      lies inside the mother's mask.
    * ``division_lookback`` (8 frames): the automatic tracker holds back this many frames
      before giving them out, so that a division seen late (SAM 2 keeps one mask over the
      touching daughters until they part) can be moved back to the frame it happened; 0: a
      division is placed where the split is seen.
    * ``division_cover`` (0.65): on a held frame the mother's mask covered both daughters when
      it is at least this share of their summed area (and elongated, below); a division moved
      back to a frame before which the mother was under this share of its parts is a mask
      that took over a neighbour (a cell about to divide is as large as its daughters
      together): none.
    * ``division_min_elongation`` (1.3): ... and its principal axes' ratio is at least this
      (two touching daughters side by side: ~2; a cell rounded up to divide: ~1).
    * ``division_max_neck`` (0.65): a track's mask that is one piece shaped like two touching
      cells (two lobes of comparable size, ``split_min_area`` / ``split_min_ratio``, joined by
      a waist at most this share of the lower lobe's radius: :func:`~.lobes.neck_split`) has
      divided, like a split (placed back and checked the same way; turned down, it stays one
      mask). 0: off.
    * ``division_stretch`` (1.6): a track's mask that, from one frame to the next, stays
      about as large (``division_cover`` .. 1 / ``division_cover`` of its area) but becomes
      elongated (principal axes' ratio at least this, and at least ``division_stretch_rise``
      (1.3) x the frame before) is two touching daughters under one convex mask (a cell
      rounded up to divide, then two cells side by side): it has divided on that frame, cut
      across its long axis (where it narrows, else through its centroid). 0: off.
    * ``division_area_drop`` (0.7): a track whose mask shrank to at most this share of its
      mask on the frame before may have kept one daughter of two: the tracker asks the
      session for a cell on the other side of the mother's last centroid, and a cell of
      comparable size found there is the other daughter (a split as above). 0: off.
    * ``division_back_neck`` (1.0: not checked): ... and, below 1, shows two lobes with a
      waist at most this share of the lower lobe's radius (:func:`~.lobes.neck_split`; an
      oval cell has none). Off by default: on the generated movies SAM 2's mask over two
      daughters on their first frame shows no waist yet, so 0.9 stopped the walk a frame late
      (tuning seeds 7-8, with ``split_min_ratio`` 0.5: division F1 0.07, within 2 frames 0.60).
    * ``division_min_cycle`` (10 frames): a daughter does not divide again within this many
      frames of its birth (a cell cycle is far longer than a few frames; what looks like it
      is a daughter's mask taking a neighbour or falling apart). 0: no limit.
    * ``separate_rejected`` (True): a split turned down as a division (a mask that took
      over a neighbour, a part under another track, two cells on every held frame) still
      becomes two tracks: the mother keeps the part over its last mask, the other part is a
      new object without parent (False: the mask stays one track over two cells).
    * ``max_gap`` (3 frames): a track missing for at most this many frames in a row can get
      its id back; longer, it has ended.
    * ``max_gap_distance`` (15 px): ... when it is found again within this distance of its
      last centroid.
    * ``leaving`` (True): end the track of a cell that leaves the field (False: a border mask
      stays under the cell's id as long as the tracker returns one).
    * ``leave_fraction`` (0.2): a mask touching the border that shrinks below this share of
      the track's median area (over its last ten frames) is a cell leaving the field: the
      track ends. Low on purpose: a cell still half in view is a cell (the CTC counts a missed
      cell ten times an extra one); what SAM 2 leaves at the border is a sliver.
    * ``border_margin`` (1 px): "touching the border" is having a pixel this close to the edge
      (1: on the outermost row or column).
    """

    divisions: bool = True
    split_min_area: int = 25
    split_min_ratio: float = 0.4
    split_min_separation: float = 2.0
    split_min_cover: float = 0.7
    division_lookback: int = 8
    division_cover: float = 0.65
    division_min_elongation: float = 1.3
    division_max_neck: float = 0.65
    division_stretch: float = 1.6
    division_stretch_rise: float = 1.3
    division_area_drop: float = 0.7
    division_back_neck: float = 1.0
    division_min_cycle: int = 10
    separate_rejected: bool = True
    max_gap: int = 3
    max_gap_distance: float = 15.0
    leaving: bool = True
    leave_fraction: float = 0.2
    border_margin: int = 1

    def __post_init__(self) -> None:
        checks = [
            (self.split_min_area >= 1, "split_min_area must be >= 1"),
            (0 < self.split_min_ratio <= 1, "split_min_ratio must be in (0, 1]"),
            (self.split_min_separation >= 0, "split_min_separation must be >= 0"),
            (0 < self.split_min_cover <= 1, "split_min_cover must be in (0, 1]"),
            (self.division_lookback >= 0, "division_lookback must be >= 0"),
            (0 < self.division_cover <= 1, "division_cover must be in (0, 1]"),
            (self.division_min_elongation >= 1, "division_min_elongation must be >= 1"),
            (0 <= self.division_max_neck < 1, "division_max_neck must be in [0, 1) (0: off)"),
            (self.division_stretch == 0 or self.division_stretch >= 1,
             "division_stretch must be 0 (off) or >= 1"),
            (self.division_stretch_rise >= 1, "division_stretch_rise must be >= 1"),
            (0 <= self.division_area_drop < 1, "division_area_drop must be in [0, 1) (0: off)"),
            (0 < self.division_back_neck <= 1, "division_back_neck must be in (0, 1] (1: not checked)"),
            (self.division_min_cycle >= 0, "division_min_cycle must be >= 0 (0: no limit)"),
            (self.max_gap >= 0, "max_gap must be >= 0 (0: no gap closing)"),
            (self.max_gap_distance > 0, "max_gap_distance must be > 0"),
            (0 <= self.leave_fraction <= 1, "leave_fraction must be in [0, 1]"),
            (self.border_margin >= 1, "border_margin must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"LineageParams: {message}")
