"""The slab and memory options of both command lines: one name each, validated at the parser,
unset options left to the config dataclasses."""

import pytest

from prismflow.cli.fit import build_parser as fit_parser
from prismflow.cli.parser import build_parser as app_parser

FIT = ["dwi.nii.gz", "--bval", "b", "--bvec", "v", "--out", "o"]
APP = ["bids", "out", "participant"]


@pytest.mark.parametrize("argv", [FIT + ["--slab-size", "0"], FIT + ["--slab-overlap", "-1"],
                                  FIT + ["--mem-gb", "0"], FIT + ["--workers", "0"],
                                  APP + ["--slab-size", "0"], APP + ["--mem-gb", "-2"]])
def test_bad_sizes_are_usage_errors(argv, capsys):
    parser = fit_parser() if argv[0] == "dwi.nii.gz" else app_parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(argv)
    assert exc.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_unset_options_are_none_so_the_dataclasses_decide():
    args = fit_parser().parse_args(FIT)
    assert (args.slab_size, args.slab_overlap, args.mem_gb, args.seed, args.device,
            args.workers, args.fibres, args.loss) == (None,) * 8
    assert not hasattr(args, "threads")                     # it never had an effect: gone
    app = app_parser().parse_args(APP + ["--mem-gb", "3.5"])
    assert app.mem_gb == 3.5 and app.slab_size is None and app.slab_overlap is None


def test_mem_gb_help_says_it_budgets_the_whole_fit():
    text = " ".join(fit_parser().format_help().split())
    start = text.index("--mem-gb GIB memory")
    mem = text[start:text.index("--device", start)]
    assert "memory budget of the whole fit" in mem and "per slab" not in mem


def test_evidence_pooling_option_reaches_the_config():
    from prismflow.cli.fit import model_config

    assert model_config(fit_parser().parse_args(FIT)).evidence_pool_deg == 15.0
    # independent voxels: nothing pooled over neighbours unless asked for
    assert model_config(fit_parser().parse_args(FIT + ["--priors", "voxelwise"])).evidence_pool_deg == 0.0
    off = model_config(fit_parser().parse_args(FIT + ["--evidence-pool-deg", "0"]))
    assert off.evidence_pool_deg == 0.0 and off.priors.smoothness > 0          # still the volume priors
    with pytest.raises(ValueError, match="evidence_pool_deg"):
        model_config(fit_parser().parse_args(FIT + ["--evidence-pool-deg", "95"]))


def test_per_fibre_f_in_option_reaches_the_config():
    from prismflow.cli.fit import model_config

    assert model_config(fit_parser().parse_args(FIT)).shared_f_in is True
    assert model_config(fit_parser().parse_args(FIT + ["--per-fibre-f-in"])).shared_f_in is False
