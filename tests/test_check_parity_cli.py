from hf_tiny import save_tiny_hf, tiny_hf_config

from r2r_jax.cli import main


def test_check_parity_reports_difference_and_exit_code(tmp_path, capsys):
    save_tiny_hf(tmp_path, tiny_hf_config())
    assert main(["check-parity", "--hf", str(tmp_path), "--batches", "2"]) == 0
    out = capsys.readouterr().out
    diff = float(out.split("max_abs_logit_diff=")[1].split()[0])
    assert 0 < diff < 1e-4  # float32 rounding differs between XLA and torch, but only just
    assert main(["check-parity", "--hf", str(tmp_path), "--batches", "2", "--tol", str(diff / 10)]) == 1
    assert "FAIL" in capsys.readouterr().out
