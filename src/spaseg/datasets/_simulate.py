"""Simulated spatial transcriptomics sections with known spatial domains."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .._errors import InputError
from ._sim_domains import MAX_DOMAINS, PATTERNS, assign_domains
from ._sim_expression import (
    MITO_SYMBOLS,
    GenePrograms,
    SpotModel,
    domain_purity,
    gene_roles,
    library_sizes,
    make_gene_programs,
    mixing_weights,
    negative_binomial_counts,
)
from ._sim_geometry import (
    DEFAULT_SPACING_UM,
    GRIDS,
    SHAPES,
    Grid,
    default_n_cols,
    in_tissue,
    make_grid,
    tissue_outline,
)


@dataclass(frozen=True)
class _Params:
    """Validated, fully resolved parameters of one simulated tissue (stored in ``uns``)."""

    n_domains: int
    pattern: str
    grid: str
    n_rows: int
    n_cols: int
    spacing_um: float
    shape: str
    n_genes: int
    n_markers: int
    marker_fold_change: tuple[float, float]
    domain_lfc_sd: float
    n_cell_states: int
    cell_state_sd: float
    n_mito_genes: int
    n_noise_genes: int
    mean_counts: float
    library_size_sd: float
    dispersion: float
    boundary_mixing: float
    domain_purity: float
    seed: int


def simulate_tissue(
    n_domains: int = 5,
    *,
    pattern: Literal["layers", "blobs", "mixed"] = "layers",
    grid: Literal["hex", "square"] = "hex",
    n_rows: int = 40,
    n_cols: int | None = None,
    spacing_um: float | None = None,
    shape: Literal["ellipse", "full"] = "ellipse",
    n_genes: int = 500,
    n_markers: int = 20,
    marker_fold_change: tuple[float, float] = (2.0, 4.0),
    domain_lfc_sd: float = 0.1,
    n_cell_states: int = 6,
    cell_state_sd: float = 0.15,
    n_mito_genes: int = 13,
    n_noise_genes: int = 20,
    mean_counts: float = 2000.0,
    library_size_sd: float = 0.35,
    dispersion: float = 0.2,
    boundary_mixing: float = 0.3,
    domain_purity: float = 0.62,
    seed: int = 0,
) -> AnnData:
    """Simulate one tissue section with known spatial domains.

    Spots on a Visium-like hexagonal or a square grid are kept inside a tissue outline and
    split into domains (cortex-like layers, Voronoi-like patches, or layers with embedded blobs).
    Each domain has its own gene program; counts are negative binomial around a log-normal
    library size. The signal is meant to be clear but not trivial: with the defaults, k-means
    on PCA of the expression alone reaches an ARI of about 0.4-0.7, and the same after
    averaging each spot with its neighbours about 0.9.

    Each spot's expected expression mixes (1) the program of its domain, a share
    ``boundary_mixing`` of which is replaced by its neighbours' domains, weighted by the spot's
    purity (Beta-distributed around ``domain_purity``); (2) the program of cells shared by all
    domains, with the remaining weight; (3) cell-state programs with random, spatially
    independent activity. Spots low in purity or high in cell-state activity are ambiguous on
    their own, but not among their neighbours.

    Parameters
    ----------
    n_domains
        Number of domains, 2 to 20. Every domain gets at least ``0.4 / n_domains`` of the spots.
    pattern
        ``"layers"``: curved parallel bands of unequal widths (like DLPFC cortical layers);
        ``"blobs"``: Voronoi-like patches around random seeds (two patches per domain);
        ``"mixed"``: layers with one (fewer than 5 domains) or two round blobs embedded,
        the blobs being the last domains.
    grid
        ``"hex"``: Visium-like hexagonal grid; ``array_col`` has the parity of ``array_row``.
        ``"square"``: square lattice, like Stereo-seq bins.
    n_rows
        Number of grid rows (Visium: 78).
    n_cols
        Number of ``array_col`` values (Visium: 128; on the hex grid each row holds every
        second one). ``None``: as many as make the capture area about square.
    spacing_um
        Centre-to-centre distance of neighbouring spots in µm. ``None``: 100 on the hex grid
        (Visium), 50 on the square grid.
    shape
        ``"ellipse"``: an irregular blob of tissue with background around it; ``"full"``: tissue
        on every spot.
    n_genes
        Number of genes, including markers, mitochondrial and noise genes.
    n_markers
        Marker genes per domain: upregulated in that domain only.
    marker_fold_change
        Range of the markers' fold changes (drawn uniformly).
    domain_lfc_sd
        Standard deviation of the mild domain differences (natural-log fold changes) on all
        other non-mitochondrial, non-noise genes.
    n_cell_states
        Number of cell-state programs (cell cycle, stress ...), each acting on
        ``2 * n_markers`` random marker and background genes.
    cell_state_sd
        Standard deviation of the per-spot activity of each cell-state program. Above about 0.3
        the states, not the domains, dominate the expression.
    n_mito_genes
        Mitochondrial genes (``MT-ND1``, ``MT-CO1``, ...; at most 13), about 5% of the counts.
    n_noise_genes
        Genes with no domain signal at all.
    mean_counts
        Mean total counts per spot.
    library_size_sd
        Standard deviation of the log library size across spots.
    dispersion
        Negative binomial dispersion ``phi`` (variance ``mu + phi * mu**2``), > 0.
    boundary_mixing
        Share of a spot's expression taken from its neighbours' domains, in [0, 1); only spots
        at a domain boundary are affected.
    domain_purity
        Mean share, in (0, 1], of a spot's expression from domain-specific cells; the rest
        comes from cells shared by all domains. 1 makes every spot pure.
    seed
        Seed of the random generator: the same seed gives the same data.

    Returns
    -------
    AnnData with integer counts in ``X`` (float32 CSR) and

    - ``obs``: ``array_row``, ``array_col``, ``domain_truth`` (categorical ``"D0"``, ``"D1"``, ...);
      ``obs_names`` are Visium-like barcodes (fixed per grid position) with suffix ``-1``.
    - ``obsm["spatial"]``: spot centres (x, y) in µm.
    - ``var``: index ``ENSSIM...`` gene ids, ``gene_symbols``, ``marker_domain`` (domain name or
      ``""``), ``gene_role`` (marker, background, mito, noise), ``marker_fold_change``.
    - ``uns["simulation"]``: all parameters, including the seed.

    Examples
    --------
    >>> adata = simulate_tissue(5, pattern="layers", seed=1)
    >>> adata.obs["domain_truth"].value_counts()  # doctest: +SKIP
    """
    params = _resolve_params(locals())
    return _simulate(
        params, n_sections=1, outline_jitter=0.0, batch_library_sd=0.0, batch_gene_sd=0.0
    )[0]


def simulate_sections(
    n_sections: int = 3,
    *,
    outline_jitter: float = 0.02,
    batch_library_sd: float = 0.15,
    batch_gene_sd: float = 0.1,
    seed: int = 0,
    **tissue: Any,
) -> list[AnnData]:
    """Simulate serial sections of one tissue: the same domains, slightly different sections.

    All sections share the grid, the domain geometry and the gene programs. Each section gets
    its own tissue outline (the reference outline perturbed), its own counts, and a batch effect:
    a library-size factor and small per-gene fold changes.

    Parameters
    ----------
    n_sections
        Number of sections.
    outline_jitter
        Perturbation of each section's outline (centre, radius, wobble), in unit lengths
        (half the grid width).
    batch_library_sd
        Standard deviation of the per-section log library-size factor.
    batch_gene_sd
        Standard deviation of the per-section, per-gene log fold changes.
    seed
        Seed of the random generator.
    **tissue
        Any other keyword argument of :func:`simulate_tissue` (``n_domains``, ``pattern``, ...).

    Returns
    -------
    One AnnData per section, laid out as in :func:`simulate_tissue`; barcodes end in
    ``-1``, ``-2``, ... (as in Space Ranger aggregation), and ``uns["simulation"]`` also holds
    ``section`` and the batch parameters.
    """
    _check_range({"n_sections": n_sections}, "n_sections", 1, None)
    batch = {
        "outline_jitter": outline_jitter,
        "batch_library_sd": batch_library_sd,
        "batch_gene_sd": batch_gene_sd,
    }
    for name in batch:
        _check_non_negative(batch, name)
    params = _resolve_params({**tissue, "seed": seed})
    sections = _simulate(params, n_sections, **batch)
    for index, adata in enumerate(sections):
        adata.uns["simulation"].update(
            generator="spaseg.datasets.simulate_sections",
            section=index,
            n_sections=n_sections,
            **batch,
        )
    return sections


def _resolve_params(args: dict[str, Any]) -> _Params:
    """Merge with the defaults of :func:`simulate_tissue`, fill grid-dependent ones, check all."""
    defaults = dict(simulate_tissue.__kwdefaults__, n_domains=simulate_tissue.__defaults__[0])
    unknown = set(args) - set(defaults)
    if unknown:
        raise TypeError(f"unexpected simulation parameters: {sorted(unknown)}")
    p = {**defaults, **args}
    _check_choice(p, "pattern", PATTERNS)
    _check_choice(p, "grid", GRIDS)
    _check_choice(p, "shape", SHAPES)
    if p["n_cols"] is None:
        p["n_cols"] = default_n_cols(p["grid"], p["n_rows"])
    if p["spacing_um"] is None:
        p["spacing_um"] = DEFAULT_SPACING_UM[p["grid"]]
    _check_range(p, "n_domains", 2, MAX_DOMAINS)
    _check_range(p, "n_mito_genes", 0, len(MITO_SYMBOLS))
    for name in ("n_rows", "n_cols", "n_genes"):
        _check_range(p, name, 2, None)
    for name in ("n_markers", "n_noise_genes", "n_cell_states", "seed"):
        _check_range(p, name, 0, None)
    for name in ("domain_lfc_sd", "cell_state_sd", "library_size_sd"):
        _check_non_negative(p, name)
    for name in ("spacing_um", "mean_counts", "dispersion"):
        if not p[name] > 0:
            raise InputError(f"must be positive, got {p[name]!r}", field=name)
    if not 0 <= p["boundary_mixing"] < 1:
        raise InputError(
            f"must be in [0, 1), got {p['boundary_mixing']!r}", field="boundary_mixing"
        )
    if not 0 < p["domain_purity"] <= 1:
        raise InputError(f"must be in (0, 1], got {p['domain_purity']!r}", field="domain_purity")
    lo, hi = p["marker_fold_change"]
    if not 0 < lo <= hi:
        raise InputError(
            f"must be a range (low, high) with 0 < low <= high, got {(lo, hi)}",
            field="marker_fold_change",
        )
    p["marker_fold_change"] = (float(lo), float(hi))
    return _Params(**p)


def _check_choice(p: dict, name: str, choices: tuple[str, ...]) -> None:
    if p[name] not in choices:
        raise InputError(f"must be one of {choices}, got {p[name]!r}", field=name)


def _check_range(p: dict, name: str, lo: int, hi: int | None) -> None:
    value = p[name]
    if not isinstance(value, int | np.integer) or value < lo or (hi is not None and value > hi):
        bounds = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        raise InputError(f"must be an integer {bounds}, got {value!r}", field=name)


def _check_non_negative(p: dict, name: str) -> None:
    if not p[name] >= 0:
        raise InputError(f"must be >= 0, got {p[name]!r}", field=name)


def _simulate(
    p: _Params,
    n_sections: int,
    outline_jitter: float,
    batch_library_sd: float,
    batch_gene_sd: float,
) -> list[AnnData]:
    """Shared geometry and gene programs, then one sample of counts per section."""
    # Independent streams: changing e.g. n_genes leaves the geometry unchanged, and section i
    # is drawn the same way whatever n_sections is.
    geometry_ss, program_ss, sections_ss = np.random.SeedSequence(p.seed).spawn(3)
    geometry_rng = np.random.default_rng(geometry_ss)
    full = make_grid(p.grid, p.n_rows, p.n_cols, p.spacing_um)
    uv = full.unit_coords()
    outline = tissue_outline(p.shape, geometry_rng)
    labels = assign_domains(uv, in_tissue(uv, outline), p.n_domains, p.pattern, geometry_rng)

    roles = gene_roles(p.n_genes, p.n_domains, p.n_markers, p.n_mito_genes, p.n_noise_genes)
    programs = make_gene_programs(
        roles, p.n_domains, p.n_markers, p.marker_fold_change, p.domain_lfc_sd,
        p.n_cell_states, np.random.default_rng(program_ss),
    )  # fmt: skip

    sections = []
    for index, section_ss in enumerate(sections_ss.spawn(n_sections)):
        layout_rng, counts_rng = (np.random.default_rng(s) for s in section_ss.spawn(2))
        # Serial sections: the outline shifts a little, and each library is prepared apart.
        shifted = None if outline is None else outline.jittered(layout_rng, outline_jitter)
        keep = in_tissue(uv, shifted)
        library_factor = np.exp(layout_rng.normal(0.0, batch_library_sd))
        gene_factor = np.exp(layout_rng.normal(0.0, batch_gene_sd, p.n_genes))
        batch_programs = replace(programs, profiles=_renormalised(programs.profiles * gene_factor))
        section = full.subset(keep)
        barcodes = _barcodes(section, p.n_cols, suffix=f"-{index + 1}")
        sections.append(
            _sample_section(
                p, section, barcodes, labels[keep], batch_programs, library_factor, counts_rng
            )
        )
    return sections


def _renormalised(profiles: np.ndarray) -> np.ndarray:
    return profiles / profiles.sum(axis=1, keepdims=True)


def _sample_section(
    p: _Params,
    section: Grid,
    barcodes: pd.Index,
    labels: np.ndarray,
    programs: GenePrograms,
    library_factor: float,
    rng: np.random.Generator,
) -> AnnData:
    """Counts and annotations for the tissue spots of one section."""
    purity = domain_purity(section.n_spots, p.domain_purity, rng)
    boundary = mixing_weights(section, labels, p.n_domains, p.boundary_mixing)
    model = SpotModel(
        programs=programs,
        weights=np.column_stack([boundary * purity[:, None], 1.0 - purity]),
        state_activity=rng.normal(0.0, p.cell_state_sd, (section.n_spots, p.n_cell_states)),
        size=library_sizes(section.n_spots, p.mean_counts * library_factor, p.library_size_sd, rng),
    )
    counts = negative_binomial_counts(model, p.dispersion, rng)

    names = [f"D{k}" for k in range(p.n_domains)]
    obs = pd.DataFrame(
        {
            "array_row": section.array_row,
            "array_col": section.array_col,
            "domain_truth": pd.Categorical.from_codes(labels, categories=names),
        },
        index=barcodes,
    )
    simulation = {"generator": "spaseg.datasets.simulate_tissue", **asdict(p)}
    simulation["marker_fold_change"] = list(p.marker_fold_change)
    return AnnData(
        X=counts,
        obs=obs,
        var=programs.var.copy(),
        obsm={"spatial": section.xy.copy()},
        uns={"simulation": simulation},
    )


def _barcodes(grid: Grid, n_cols: int, suffix: str) -> pd.Index:
    """16-base barcodes fixed by grid position (like Visium's whitelist) plus ``suffix``.

    The position index goes through a bijective multiplicative hash modulo 4**16, so
    barcodes are unique and look random.
    """
    u64 = np.uint64
    position = grid.array_row.astype(u64) * u64(n_cols) + grid.array_col.astype(u64)
    hashed = (position * u64(2654435761) + u64(0x5BD1E995)) & u64(0xFFFFFFFF)
    digits = (hashed[:, None] >> (u64(2) * np.arange(16, dtype=u64))) & u64(3)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)[digits.astype(np.intp)]
    return pd.Index(np.char.add(letters.view("S16").ravel().astype(str), suffix), name="barcode")
