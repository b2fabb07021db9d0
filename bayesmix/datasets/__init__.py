"""Small public data sets with published results, bundled as CSV files."""

from importlib import resources

import pandas as pd

__all__ = [
    "load_acidity",
    "load_carcinoma",
    "load_co2data",
    "load_enzyme",
    "load_faithful",
    "load_galaxy",
    "load_npreg",
    "load_patent",
    "load_thyroid",
    "load_tonedata",
]


def _load(name):
    with resources.files(__package__).joinpath("data", f"{name}.csv").open() as handle:
        return pd.read_csv(handle)


def load_faithful():
    """Old Faithful geyser eruptions: 272 rows, columns ``eruptions`` and ``waiting``.

    Source: R ``datasets::faithful`` (Härdle 1991; Azzalini and Bowman 1990).
    Published: ``waiting`` with K=2, equal sigma (mixtools ``normalmixEM``): weights
    0.361 / 0.639, means 54.61 / 80.09, sigma 5.87, log-likelihood -1034.0.

    Returns
    -------
    pandas.DataFrame
    """
    return _load("faithful")


def load_galaxy():
    """Velocities of 82 galaxies of the Corona Borealis region, in 1000 km/s: ``velocity``.

    Source: R ``MASS::galaxies`` divided by 1000 (Venables and Ripley, Modern Applied
    Statistics with S; MASS is GPL-2 | GPL-3, the data are published measurements),
    from Postman, Huchra and Geller (1986, Astronomical Journal 92) via Roeder (1990,
    JASA 85). MASS's help page notes a typo, kept here as in MASS: the 78th value
    26690 should be 26960.
    Published: Richardson and Green (1997, JRSS B 59) analyse these data with an
    unknown number of normal components; their posterior on K puts most mass on 5 to 7.

    Returns
    -------
    pandas.DataFrame
    """
    return _load("galaxy")


def load_co2data():
    """CO2 emissions per capita against GNP for 28 countries: ``country``, ``GNP``, ``CO2``.

    Source: R ``mixtools::CO2data`` (Hurn, Justel and Robert 2003). Published (mixtools
    ``regmixEM``, K=2): slopes -0.0233 / 0.6766, intercepts 8.679 / 1.415.

    Returns
    -------
    pandas.DataFrame
    """
    return _load("co2data")


def load_npreg():
    """Simulated two-component regressions: 200 rows, ``x``, ``yn``, ``yp``, ``yb``, ``class``.

    Source: R ``flexmix::NPreg`` (Leisch 2004); ``class`` is the true component.

    Returns
    -------
    pandas.DataFrame
    """
    return _load("npreg")


def load_tonedata():
    """Perceived tone against stretch ratio: 150 rows, ``stretchratio`` and ``tuned``.

    Source: R ``mixtools::tonedata`` (Cohen 1980).

    Returns
    -------
    pandas.DataFrame
    """
    return _load("tonedata")


def load_acidity():
    """Log acidity index of 155 lakes in north-central Wisconsin: column ``acidity``.

    Source: Richardson and Green (1997), JRSS B 59(4).

    Returns
    -------
    pandas.DataFrame
    """
    return _load("acidity")


def load_enzyme():
    """Enzymatic activity in the blood of 245 individuals: column ``enzyme``.

    Source: Richardson and Green (1997), JRSS B 59(4).

    Returns
    -------
    pandas.DataFrame
    """
    return _load("enzyme")


def load_thyroid():
    """Thyroid gland data: 215 patients, ``Diagnosis`` and five laboratory tests.

    Source: R ``mclust::thyroid`` (Coomans et al. 1983).

    Returns
    -------
    pandas.DataFrame
    """
    return _load("thyroid")


def load_carcinoma(dichotomize=True):
    """Seven pathologists' ratings of 118 slides of the uterine cervix: ``slide``, ``A``-``G``.

    Source: Landis and Koch (1977), "An application of hierarchical kappa-type statistics
    in the assessment of majority agreement among multiple observers", Biometrics 33(2),
    363-374, Table 1, from Holmquist, McMahan and Williams (1967, Archives of Pathology
    84); published measurements. Each pathologist rated each slide 1 (negative), 2
    (atypical squamous hyperplasia), 3 (carcinoma in situ), 4 (squamous carcinoma with
    early stromal invasion) or 5 (invasive carcinoma).

    Parameters
    ----------
    dichotomize : bool, default=True
        Ratings as 0 (1-2) or 1 (carcinoma, 3-5), as in Agresti (2002, Categorical Data
        Analysis, Table 13.1) and poLCA's ``carcinoma`` (which codes them 1 / 2).
        False keeps the five levels.

    Published (poLCA, Linzer and Lewis 2011, Journal of Statistical Software 42(10),
    section 5.1; the dichotomized data): latent class models with 2, 3 and 4 classes
    reach maximum log-likelihoods -317.2568, -293.705 and -289.2858; with 3 classes the
    shares are 0.1817 / 0.3736 / 0.4447.

    Returns
    -------
    pandas.DataFrame
    """
    data = _load("carcinoma")
    if dichotomize:
        raters = list("ABCDEFG")
        data[raters] = (data[raters] >= 3).astype(int)
    return data


def load_patent():
    """Patents and R&D spending of 70 pharmaceutical and biomedical companies (1976).

    Columns ``Company``, ``Patents`` (number of patents), ``RDS`` (R&D spending per
    sales) and ``lgRD`` (log R&D spending).

    Source: R ``flexmix::patent`` (flexmix 2.3-18, GPL-2 | GPL-3; the data of Wang,
    Cockburn and Puterman 1998, "Analysis of patent data: a mixed-Poisson-regression-
    model approach", Journal of Business & Economic Statistics 16(1), from Hall, Cummins,
    Laderman and Mundy's NBER R&D panel). Company names have trailing blanks removed.
    Reference (flexmix ``stepFlexmix(Patents ~ lgRD, model = FLXMRglm(family =
    "poisson"), nrep = 30)``, run once): K=2 log-likelihood -219.637, intercepts
    -0.1623 / 1.7009, slopes 1.0262 / 0.7256, weights 0.704 / 0.296; K=3
    log-likelihood -203.533, intercepts -2.3250 / 0.5833 / 1.9761, slopes
    1.5224 / 0.8655 / 0.6691, weights 0.240 / 0.576 / 0.183; K=1 -316.691.

    Returns
    -------
    pandas.DataFrame
    """
    return _load("patent")
