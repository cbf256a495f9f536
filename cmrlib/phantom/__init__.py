"""Built-in synthetic cine-CMR cohort: a 4D analytic heart phantom with complete ground truth.

    from cmrlib.phantom import make_cohort, simulate_subject, PhantomConfig
    store = make_cohort("runs/x/cohort", n=24, seed=0)          # -> cmrlib.store.CohortStore
    cines = simulate_subject(3, seed=0)                          # -> {"SAX": Cine, "2CH": Cine, "4CH": Cine}

See README.md in this folder for the model, its distributions and their sources.
"""
from .cohort import make_cohort, simulate_subject
from .subjects import CONDITIONS, PhantomConfig, sample_recipe

__all__ = ["make_cohort", "simulate_subject", "PhantomConfig", "sample_recipe", "CONDITIONS"]
