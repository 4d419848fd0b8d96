"""3-D alignment: known rigid transforms of simulated serial sections are recovered."""

import numpy as np
import pytest

import spaseg
from spaseg import InputError
from spaseg.datasets._sim_serial import rigid_matrix, simulate_serial_sections
from spaseg.tl._register import Rigid


def serial(n=3, **kw):
    params = dict(n_rows=24, n_domains=4, n_genes=80, n_markers=10, n_noise_genes=5)
    sections = simulate_serial_sections(n, pattern="mixed", seed=5, **{**params, **kw})
    joint = spaseg.pp.joint_normalize_pca({s.obs["sample"].iloc[0]: s for s in sections}, n_comps=6)
    return sections, joint


def truth_of(joint):
    return np.concatenate(
        [np.asarray(joint.obsm["spatial_truth"])[(joint.obs["sample"] == s).to_numpy()]
         for s in joint.obs["sample"].cat.categories]
    )  # fmt: skip


def errors(sections, joint):
    """Rotation error (deg) and error at the section centre (spacings) of each section.

    Sections of ~700 spots pin the transform less precisely than real ones: 3 degrees and 1.5
    spacings here; benchmarks/alignment.py measures the targets on larger sections.
    """
    out = []
    for k, section in enumerate(sections[1:], start=1):
        info = section.uns["serial"]
        est = Rigid(joint.uns["align"]["matrix"][k], joint.uns["align"]["offset"][k])
        true = Rigid(info["matrix"], info["offset"])
        cos_sin = (est.matrix @ true.matrix.T)[:, 0]
        centre = section.obsm["spatial"].mean(axis=0, keepdims=True)
        shift = np.linalg.norm(est.apply(centre) - true.apply(centre)) / info["spacing"]
        out.append((abs(np.degrees(np.arctan2(cos_sin[1], cos_sin[0]))), shift))
    return np.array(out)


def test_rigid_matrix_and_transform():
    m = rigid_matrix(90, reflection=True)
    np.testing.assert_allclose(m @ [1.0, 0.0], [0.0, 1.0], atol=1e-12)
    t = Rigid(m, np.array([1.0, 2.0]))
    assert t.reflection and abs(t.rotation_deg - 90) < 1e-9


def test_recovers_known_rotations_and_shifts():
    sections, joint = serial(3, rotations=[0, 170, -95])
    spaseg.tl.align(joint)
    err = errors(sections, joint)
    assert (err[:, 0] < 3.0).all() and (err[:, 1] < 1.5).all(), err
    spacing = sections[0].uns["serial"]["spacing"]
    aligned_error = np.linalg.norm(joint.obsm["spatial_aligned"] - truth_of(joint), axis=1)
    assert np.median(aligned_error) < 0.5 * spacing
    info = joint.uns["align"]
    assert list(info["samples"]) == ["section0", "section1", "section2"]
    np.testing.assert_array_equal(joint.obsm["spatial_3d"][:, 2], joint.obs["sample"].cat.codes)
    assert not info["reflection"].any()


def test_reflection_is_found_when_allowed():
    sections, joint = serial(2, rotations=[0, 60], reflections=[False, True])
    spaseg.tl.align(joint, reflection=True, z={"section0": 0.0, "section1": 10.0})
    assert list(joint.uns["align"]["reflection"]) == [False, True]
    err = errors(sections, joint)
    assert (err[:, 0] < 3.0).all() and (err[:, 1] < 1.5).all(), err
    assert set(joint.obsm["spatial_3d"][:, 2]) == {0.0, 10.0}


def test_align_on_domains_and_nonrigid():
    sections, joint = serial(2, rotations=[0, -120])
    joint.obs["domain"] = joint.obs["domain_truth"]
    spaseg.tl.align(joint, use_rep="domain", nonrigid=True)
    err = errors(sections, joint)
    assert (err[:, 0] < 3.0).all() and (err[:, 1] < 1.5).all(), err
    # on rigidly moved sections the smooth refinement stays small
    assert joint.uns["align"]["max_displacement"][1] < sections[0].uns["serial"]["spacing"]


def test_z_orders_the_stack():
    _, joint = serial(3, rotations=[0, 10, 20])
    spaseg.tl.align(joint, z={"section0": 2.0, "section1": 0.0, "section2": 1.0})
    assert list(joint.uns["align"]["samples"]) == ["section1", "section2", "section0"]
    assert joint.uns["align"]["reference"] == "section1"


def test_sections_with_different_gene_sets():
    """Each section measured its own genes (as the DLPFC files): aligned on the shared ones."""
    sections, _ = serial(2, rotations=[0, 140], n_genes=100)
    own = [sections[0][:, :80].copy(), sections[1][:, 25:].copy()]  # 55 genes in common
    joint = spaseg.pp.joint_normalize_pca(
        {s.obs["sample"].iloc[0]: s for s in own}, n_comps=6, min_shared_genes=40
    )
    assert joint.n_vars == 55
    spaseg.tl.align(joint)
    err = errors(sections, joint)
    assert (err[:, 0] < 3.0).all() and (err[:, 1] < 1.5).all(), err


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"z": {"section0": 1.0, "section1": 1.0}}, r"group 'g'.*share z = 1"),
        ({"z": {"section0": 1.0, "nope": 2.0}}, r"group 'g'.*unknown section\(s\) \['nope'\]"),
        ({"z": {"section0": 1.0}}, r"group 'g'.*no z for section\(s\) \['section1'\]"),
        ({"order": ["section1"]}, r"every section once"),
        ({"use_rep": "missing"}, r"neither in obsm nor in obs"),
    ],
)
def test_bad_input(kwargs, match):
    _, joint = serial(2, n_rows=12)
    with pytest.raises(InputError, match=match):
        spaseg.tl.align(joint, group="g", **kwargs)
