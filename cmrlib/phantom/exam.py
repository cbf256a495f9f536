"""A phantom subject written as a scanner's whole clinical exam: one flat folder of DICOM files, 24 series in one
vendor's naming, as a PACS export gives them (surveys, the SAX cine stack, 2CH/3CH/4CH/RVOT cines and a repeated
4CH, phase-contrast flow, late enhancement, a Look-Locker scout, MOLLI and its map, single-phase blocks, 3D blocks,
a screen capture).

    from cmrlib.phantom.exam import write_exam
    write_exam("demo_exam", vendor="siemens")      # then: cmrlib analyse demo_exam --run runs/default --out report

The SAX, 2CH and 4CH cines are the phantom's own renderings with its own plane geometry (ImagePositionPatient and
ImageOrientationPatient from the planes it sliced); the 3CH and RVOT planes are placed about the long axis and carry
the 4CH and 2CH pixels (their geometry is what a sorter reads); every other series holds noise. The patient's
identifiers are fake and deliberate, so a test can check that none reaches an output. For tests, benchmarks and
trying `cmrlib analyse` and `cmrlib ingest dicom` on a mixed exam without real data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from .anatomy import Heart
from .cohort import _recipe, frame_phases, simulate_subject
from .render import Geometry, Plane

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
IDENTITY = dict(PatientName="DOE^JANE", PatientID="PID-4455667", PatientBirthDate="19610203", PatientSex="F",
                AccessionNumber="ACC-8899001", InstitutionName="ST ELSEWHERE HOSPITAL")
CINE = ["ORIGINAL", "PRIMARY", "M", "NORM"]
NAMES = {  # the series descriptions each vendor's protocols give, by kind
    "philips": dict(manufacturer="Philips Medical Systems", survey=("Survey_SHC", "Survey_BH"), ref="SENSE-ref",
                    sax="sa_sense", ch2="2ch_sense", ch3="lvot_sense", ch4="4ch_sense", rvot="rvot_sense",
                    flow=("Qflow_AO_150", "Qflow_MPA_150", "Qflow_RPA", "Qflow_LPA"),
                    lge=("LGE_sa_IR_TFE", "PSIR_sa"), ll="LL_TI_scout", molli="MOLLI_sa_mid", t1map="T1map_MOLLI",
                    single=("T2_BB_TSE_sa", "BTFE_single_tra", "STIR_4ch"), morph="3D_BTFE_WH_nav", mra="MRA_CE_3D",
                    capture="Screen Save"),
    "siemens": dict(manufacturer="SIEMENS", survey=("localizer", "trufi_loc_multi"), ref="AAHead_Scout",
                    sax="cine_trufi_retro_sax", ch2="cine_trufi_retro_2ch", ch3="cine_trufi_retro_3ch",
                    ch4="cine_trufi_retro_4ch", rvot="cine_trufi_retro_RVOT",
                    flow=("flow_ao_fl2d_venc150", "flow_ao_fl2d_venc150_P", "flow_mpa_fl2d_venc150",
                          "flow_mpa_fl2d_venc150_P"),
                    lge=("de_tfl_sax_mag", "de_tfl_psir_sax"), ll="TI_scout_tfl", molli="MOLLI_sax_mid",
                    t1map="MOLLI_sax_mid_T1MAP", single=("haste_tra_bh", "tse_db_sax", "trufi_single_4ch"),
                    morph="t1_fl3d_whole_heart", mra="fl3d_ce_mra", capture="Evidence document"),
    "ge": dict(manufacturer="GE MEDICAL SYSTEMS", survey=("3-Plane Loc", "3-Plane Loc BH"), ref="ASSET Cal",
               sax="FIESTA CINE SAX", ch2="FIESTA CINE 2CH", ch3="FIESTA CINE LVOT", ch4="FIESTA CINE 4CH",
               rvot="FIESTA CINE RVOT",
               flow=("PC VENC 150 AO", "PC VENC 150 MPA", "PC VENC 100 RPA", "PC VENC 100 LPA"),
               lge=("MDE SAX", "MDE PSIR SAX"), ll="TI Scout", molli="MOLLI SAX MID", t1map="T1 MAP MOLLI",
               single=("Double IR FSE SAX", "SSFSE AX", "Triple IR 4CH"), morph="3D FIESTA WH", mra="MRA 3D CE",
               capture="Screen Save"),
}
VENDORS = tuple(NAMES)


@dataclass
class Writer:
    """Writes one exam: the study's UIDs and identity, a running instance count, one folder."""

    folder: Path
    vendor: str
    descriptions: bool
    rng: np.random.Generator
    n_files: int = 0
    person: dict | None = None

    def __post_init__(self):
        self.study = generate_uid()
        self.frame_ref = generate_uid()
        self.person = dict(IDENTITY, **(self.person or {}))

    def series(self, number: int, desc: str, images: list[dict], sop: str = MR_IMAGE) -> int:
        """Write one series: `images` are dicts of per-image fields (`pixels` (H, W), `plane`, `time`, ...)."""
        uid = generate_uid()
        for i, im in enumerate(images):
            self.write(number, desc, uid, i + 1, im, sop)
        return len(images)

    def write(self, number: int, desc: str, uid: str, instance: int, im: dict, sop: str) -> None:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        self.n_files += 1
        ds = FileDataset(str(self.folder / f"IM_{self.n_files:05d}"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = sop, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = self.study, uid, self.frame_ref
        ds.Modality, ds.Manufacturer, ds.MagneticFieldStrength = "MR", NAMES[self.vendor]["manufacturer"], 1.5
        for k, v in self.person.items():
            setattr(ds, k, v)
        ds.SeriesNumber, ds.InstanceNumber = number, instance
        if self.descriptions:
            ds.SeriesDescription = ds.ProtocolName = desc
        ds.ImageType = im.get("image_type", CINE)
        ds.MRAcquisitionType = im.get("acquisition", "2D")
        px = np.clip(np.round(im["pixels"]), 0, 4095).astype(np.uint16)
        plane: Plane = im["plane"]
        ds.Rows, ds.Columns = px.shape
        ds.PixelSpacing = [plane.px, plane.px]
        ds.SliceThickness = plane.thickness
        ds.ImageOrientationPatient = [round(float(x), 6) for x in (*plane.u, *plane.v)]
        corner = plane.origin - (px.shape[1] - 1) / 2 * plane.px * plane.u - (px.shape[0] - 1) / 2 * plane.px * plane.v
        ds.ImagePositionPatient = [round(float(x), 4) for x in corner]
        for key, tag in (("time", "TriggerTime"), ("phases", "CardiacNumberOfImages"), ("ti", "InversionTime"),
                         ("sequence", "SequenceName")):
            if im.get(key) is not None:
                setattr(ds, tag, im[key])
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = px.tobytes()
        ds.save_as(ds.filename, enforce_file_format=True)

    def noise(self, shape) -> np.ndarray:
        return self.rng.uniform(0, 400, shape)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _plane(origin, normal, like: Plane, down=None) -> Plane:
    """A plane through `origin` with this normal, the matrix and spacing of `like`; rows run along `down`."""
    n = _unit(normal)
    down = np.array([0.0, 0.0, -1.0]) if down is None else np.asarray(down, float)
    v = down - (down @ n) * n
    v = _unit(v if np.linalg.norm(v) > 1e-3 else np.cross(n, [1.0, 0.0, 0.0]))
    return Plane(np.asarray(origin, float), np.cross(v, n), v, like.shape, like.px, like.thickness)


def about_axis(axis: np.ndarray, degrees: float) -> np.ndarray:
    """The normal of the plane holding `axis` whose line in the short-axis plane lies `degrees` from the patient's
    anterior toward the lateral wall (the sorter's angle, `cmrlib.io.exam.plane_angle`)."""
    from ..io.exam import ANTERIOR, LEFT

    a = _unit(ANTERIOR - (ANTERIOR @ axis) * axis)
    lat = _unit(LEFT - (LEFT @ axis) * axis - (LEFT @ a) * a)
    r = np.deg2rad(degrees)
    d = np.cos(r) * a + np.sin(r) * lat
    return _unit(np.cross(axis, d))


def _cine_images(frames: np.ndarray, plane: Plane, times: np.ndarray, scale: float, **more) -> list[dict]:
    return [dict(pixels=frames[t] * scale, plane=plane, time=round(float(times[t]), 2), phases=len(frames), **more)
            for t in range(len(frames))]


def write_exam(folder: str | Path, vendor: str = "philips", descriptions: bool = True, subject: int = 1,
               seed: int = 0, config: dict | None = None, person: dict | None = None, big: int = 0) -> Path:
    """Write a phantom subject's whole exam into `folder` (created; flat, files `IM_00001`...). `vendor`: whose
    series descriptions (`VENDORS`); `descriptions=False` strips them (an anonymised export: geometry and timing
    alone); `config`: phantom settings (matrix, pixel size, frames); `person`: identity fields over the fake ones;
    `big`: slices added to the two 3D blocks (a larger export). The folder."""
    if vendor not in NAMES:
        raise ValueError(f"vendor is one of {', '.join(VENDORS)}, got {vendor!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = dict(dict(n_frames=30, matrix=96, pixel_mm=2.0), **(config or {}))
    recipe = _recipe(subject, seed, config)
    geom = Geometry(Heart(recipe, frame_phases(recipe)), recipe)
    cines = simulate_subject(recipe, seed, config)
    sax_planes, ch2, ch4 = geom.sax_planes(), geom.lax_plane("2CH"), geom.lax_plane("4CH")
    axis = _unit(sax_planes[-1].origin - sax_planes[0].origin)  # base -> apex
    w = Writer(folder, vendor, descriptions, np.random.default_rng(seed), person=person)
    names, times = NAMES[vendor], cines["SAX"].frame_times
    scale = 2000.0 / max(float(np.percentile(cines["SAX"].pixels, 99.5)), 1e-6)
    centre = sax_planes[len(sax_planes) // 2].origin
    H = ch4.shape[0]

    def survey(number: int, desc: str) -> None:
        ims = [dict(pixels=w.noise(ch4.shape), plane=_plane(centre + k * 15 * n, n, ch4), time=0.0)
               for n in np.eye(3) for k in (-1, 0, 1)]
        w.series(number, desc, ims)

    def block(number: int, desc: str, normal, n: int, gap: float, acquisition="2D", **more) -> None:
        ims = [dict(pixels=w.noise(ch4.shape), plane=_plane(centre + (k - n / 2) * gap * _unit(normal), normal, ch4),
                    acquisition=acquisition, **more) for k in range(n)]
        w.series(number, desc, ims)

    survey(1, names["survey"][0])
    survey(2, names["survey"][1])
    block(3, names["ref"], [0, 0, 1], 12, 8.0, acquisition="3D")
    sax = [im for k, p in enumerate(sax_planes) for im in _cine_images(cines["SAX"].pixels[:, k], p, times, scale)]
    w.series(4, names["sax"], sax)
    rvot = _plane(ch2.origin + 25 * ch2.u, _unit(axis + about_axis(axis, 40.0)), ch2)
    ch3 = _plane(ch4.origin, about_axis(axis, 178.0), ch4, down=axis)
    for number, key, plane, view in ((5, "ch4", ch4, "4CH"), (6, "ch2", ch2, "2CH"), (7, "ch3", ch3, "4CH"),
                                     (8, "rvot", rvot, "2CH")):
        w.series(number, names[key], _cine_images(cines[view].pixels, plane, times, scale))
    aorta = _plane(centre + np.array([-20.0, -10.0, 60.0]), [0.1, 0.2, 1.0], ch4)
    pulmonary = _plane(centre + np.array([-5.0, -25.0, 45.0]), [0.3, 0.6, 0.75], ch4)
    for i, (plane, desc) in enumerate(zip((aorta, aorta, pulmonary, pulmonary), names["flow"], strict=True)):
        w.series(9 + i, desc, _flow(w, plane, times, vendor, phase_only=vendor == "siemens" and i % 2 == 1,
                                    magnitude_only=vendor == "siemens" and i % 2 == 0))
    for i, desc in enumerate(names["lge"]):
        kind = ["ORIGINAL", "PRIMARY", "M", "IR"] if i == 0 else ["DERIVED", "PRIMARY", "PSIR", "R"]
        ims = [dict(pixels=w.noise(p.shape), plane=p, ti=300.0, time=400.0, image_type=kind) for p in sax_planes]
        w.series(13 + i, desc, ims)
    mid = sax_planes[len(sax_planes) // 2]
    w.series(15, names["ll"], [dict(pixels=w.noise(mid.shape), plane=mid, time=round(float(t), 2),
                                    ti=round(float(t) + 110, 1)) for t in times])
    w.series(16, names["molli"], [dict(pixels=w.noise(mid.shape), plane=mid, time=500.0, ti=float(ti))
                                  for ti in (100, 180, 260, 1100, 1180, 2100, 2180, 3100)])
    w.series(17, names["t1map"], [dict(pixels=w.noise(mid.shape), plane=mid, time=500.0,
                                       image_type=["DERIVED", "PRIMARY", "T1 MAP", "T1"])])
    block(18, names["single"][0], axis, len(sax_planes), 10.0, time=300.0, ti=150.0)
    block(19, names["single"][1], [0, 0, 1], 20, 6.0, time=0.0)
    w.series(20, names["single"][2], [dict(pixels=w.noise(ch4.shape), plane=ch4, time=350.0)])
    block(21, names["morph"], [0, 0, 1], 60 + big, 1.5, acquisition="3D")
    block(22, names["mra"], [0, 1, 0], 80 + big, 1.5, acquisition="3D")
    w.series(23, names["ch4"], _cine_images(cines["4CH"].pixels, _plane(ch4.origin + 2 * ch4.normal, ch4.normal, ch4,
                                                                         down=ch4.v), times, scale))
    w.series(24, names["capture"], [dict(pixels=w.noise((H, H)), plane=ch4,
                                         image_type=["DERIVED", "SECONDARY", "SCREEN SAVE"])], sop=SECONDARY_CAPTURE)
    return folder


def _flow(w: Writer, plane: Plane, times: np.ndarray, vendor: str, phase_only: bool, magnitude_only: bool
          ) -> list[dict]:
    """A phase-contrast series: magnitude and phase images at every phase (Siemens: one or the other per series)."""
    mag = dict(image_type=["ORIGINAL", "PRIMARY", "M", "ND"],
               sequence="fl2d1r4_v150in" if vendor == "siemens" else None)
    pha = dict(image_type=["ORIGINAL", "PRIMARY", "P", "ND"] if vendor != "philips" else
               ["ORIGINAL", "PRIMARY", "VELOCITY MAP", "P", "PCA"])
    kinds = [pha] if phase_only else [mag] if magnitude_only else [mag, pha]
    return [dict(pixels=w.noise(plane.shape), plane=plane, time=round(float(t), 2), phases=len(times), **k)
            for t in times for k in kinds]
