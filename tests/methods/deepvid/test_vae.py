import pytest
import torch

from deepvid_plugin.explain import VAE


@pytest.mark.parametrize(("c", "h", "w"), [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64), (1, 12, 20)])
def test_shapes(c, h, w):
    vae = VAE(c, h, w).eval()
    x = torch.rand(2, c, h, w)
    with torch.no_grad():
        z = vae.encode(x)
        assert z.shape == (2, vae.config.latent_dim)
        assert vae.decode(z).shape == (2, c, h, w)


def test_fit_tensor_and_loader_and_reports_error(digits, capsys):
    x = digits.x_train[:256]
    vae = VAE.for_data(x)
    report = vae.fit(x, epochs=3, progress=True)
    assert "fitting VAE" in capsys.readouterr().err  # the progress bar
    assert 0 < report.reconstruction_mse < 1.0  # better than predicting the mean
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, digits.y_train[:256]), batch_size=64)
    report2 = VAE.for_data(x).fit(loader, epochs=3, progress=False)
    assert 0 < report2.reconstruction_mse < 1.0
    assert "reconstruction MSE" in str(report)


def test_save_load_round_trip(tmp_path, digits_vae, digits):
    path = tmp_path / "vae.pt"
    digits_vae.save(path)
    back = VAE.load(path)
    x = digits.x_test[:4]
    with torch.no_grad():
        torch.testing.assert_close(back.decode(back.encode(x)), digits_vae.decode(digits_vae.encode(x)))
    assert bool(back.fitted)


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"hello": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="path: expected a VAE saved by VAE.save"):
        VAE.load(path)
