import json
import re

from hf_tiny import save_tiny_hf, tiny_hf_config

from r2r_jax.cli import main


def _figures(out: str) -> dict[str, dict[str, float]]:
    """kind -> {figure: value} from the per-kind lines `KIND: tokens=N ... key=value ... ok|FAIL`."""
    rows = {}
    for line in out.splitlines():
        m = re.match(r"([a-z]+-[a-z]+): tokens=", line)
        if m:
            rows[m.group(1)] = {k: float(v) for k, v in re.findall(r"(\w+)=([-+.\de]+|inf)", line)}
    return rows


def test_check_parity_reports_figures_and_exit_code(tmp_path, capsys):
    save_tiny_hf(tmp_path, tiny_hf_config())
    assert main(["check-parity", "--hf", str(tmp_path), "--batches", "2"]) == 0
    out = capsys.readouterr().out
    rows = _figures(out)
    assert set(rows) == {"random-left", "random-right"}  # no tokenizer in the folder: random ids only
    assert "no tokenizer files" in out and "OK: every input kind within" in out
    for r in rows.values():
        # float32 rounding differs between XLA and torch, but only just; both are this close to float64
        assert 0 < r["jax_vs_f64_max"] < 1e-5 and 0 < r["hf32_vs_f64_max"] < 1e-5
        assert r["jax_vs_f64_p95"] <= r["limit"] and r["ratio"] < 4
    diff = float(out.split("max_abs_logit_diff=")[1].split()[0])
    assert 0 < diff < 1e-4
    worst = max(r["jax_vs_f64_max"] for r in rows.values())
    assert main(["check-parity", "--hf", str(tmp_path), "--batches", "2", "--tol", str(worst / 10)]) == 1
    out = capsys.readouterr().out
    assert "FAIL: " in out and "(--tol)" in out


def test_check_parity_fails_a_wrong_config_by_the_default_rule(tmp_path, capsys):
    """A wrong import fails by the default rule too, not only under a tight --tol: the JAX side imports a
    copy of the folder whose config names another norm epsilon, transformers computes the original."""
    from r2r_jax.convert import real_parity as rp

    good, wrong = tmp_path / "good", tmp_path / "wrong"
    save_tiny_hf(good, tiny_hf_config())
    save_tiny_hf(wrong, tiny_hf_config())
    cfg = json.loads((wrong / "config.json").read_text())
    cfg["rms_norm_eps"] = 1e-2
    (wrong / "config.json").write_text(json.dumps(cfg))
    references = rp.hf_reference(good, rp.parity_inputs(good, 256, batches=2))
    assert rp.report(rp.compare(references, rp.jax_logits_fn(wrong)), write=print) == 1
    assert "FAIL: random-right, random-left" in capsys.readouterr().out


def test_check_parity_refuses_a_folder_without_config(tmp_path, capsys):
    assert main(["check-parity", "--hf", str(tmp_path)]) == 2
    assert "r2r check-parity: error:" in capsys.readouterr().err


def test_check_parity_without_its_extra_says_what_to_install(tmp_path, capsys, monkeypatch):
    """torch and peft are the `parity` extra, not the core install: without one, one line names the extra."""
    from r2r_jax.convert import parity_cli

    real = parity_cli.importlib.util.find_spec
    monkeypatch.setattr(parity_cli.importlib.util, "find_spec", lambda name: None if name == "peft" else real(name))
    assert main(["check-parity", "--hf", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs peft" in err and "r2r-jax[parity]" in err
