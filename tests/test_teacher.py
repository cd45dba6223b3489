import pytest
import torch
import torchvision

from anyres_data.spec import PatchSpec, specs_to_tensor
from anyres_model.training.perceptual import ALEXNET_FILE, load_lpips
from anyres_model.training.teacher import teacher_loss


@pytest.fixture(scope="module")
def lpips_random():
    torch.manual_seed(0)
    return load_lpips("random")


def test_teacher_loss_is_zero_for_a_generator_equal_to_its_teacher_at_s_equal_p(lpips_random):
    torch.manual_seed(1)
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    specs = specs_to_tensor([PatchSpec.global_(32)] * 3)
    loss = teacher_loss(images, specs, images.clone(), lpips_random)
    assert loss.l1.abs().max().item() < 1e-6
    assert loss.lpips.abs().max().item() < 1e-6
    assert loss.mask.min().item() == 1.0


def test_teacher_loss_is_positive_when_the_patch_disagrees_and_reaches_the_generator(lpips_random):
    torch.manual_seed(2)
    teacher = torch.rand(2, 3, 32, 32) * 2 - 1
    patches = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    specs = specs_to_tensor([PatchSpec(64.0, 10.0, 20.0, 32), PatchSpec(128.0, 50.5, 3.25, 32)])
    loss = teacher_loss(patches, specs, teacher, lpips_random)
    assert (loss.l1 > 0.05).all() and (loss.lpips > 0).all()
    loss.total.sum().backward()
    assert patches.grad.abs().sum() > 0
    # only the window is compared: the mask covers (p/s)² of the frame
    assert loss.mask[0].mean().item() == pytest.approx((32 / 64) ** 2, abs=0.05)


def test_lpips_without_weights_names_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(FileNotFoundError) as err:
        load_lpips("alex")
    message = str(err.value)
    assert ALEXNET_FILE in message and str(tmp_path / "torch-home") in message and "download" in message.lower()


def test_lpips_loads_a_torchvision_alexnet_state_dict_from_a_path(tmp_path):
    torch.manual_seed(3)
    alexnet = torchvision.models.alexnet(weights=None)
    path = tmp_path / ALEXNET_FILE
    torch.save(alexnet.state_dict(), path)
    model = load_lpips(str(path))
    assert torch.equal(model.net.slice1._modules["0"].weight, alexnet.features[0].weight)
    assert torch.equal(model.net.slice5._modules["10"].weight, alexnet.features[10].weight)
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="AlexNet"):
        load_lpips(str(tmp_path / "bad.pth"))


def test_laplacian_structure_term_compares_only_the_window_and_reaches_the_generator():
    torch.manual_seed(4)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    globals_ = specs_to_tensor([PatchSpec.global_(64)] * 2)
    assert teacher_loss(images, globals_, images.clone(), None, structure="laplacian").structure.abs().max() < 1e-6
    teacher = torch.rand(2, 3, 64, 64) * 2 - 1
    spec = PatchSpec(128.0, 10.0, 20.0, 64)  # covers teacher pixels x 5..37, y 10..42
    specs = specs_to_tensor([spec, spec])
    patches = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    loss = teacher_loss(patches, specs, teacher, None, structure="laplacian")
    assert loss.structure is not None and (loss.structure > 0.05).all()
    assert torch.allclose(loss.total, loss.l1 + loss.structure)
    loss.total.sum().backward()
    assert patches.grad.abs().sum() > 0
    # differences outside the window do not count, differences inside do
    outside, inside = teacher.clone(), teacher.clone()
    outside[:, :, 50:, 50:] = 0.9
    inside[:, :, 20:30, 15:25] = 0.9
    term = {
        name: teacher_loss(patches.detach(), specs, target, None, structure="laplacian").structure
        for name, target in (("teacher", teacher), ("outside", outside), ("inside", inside))
    }
    assert torch.allclose(term["outside"], term["teacher"])
    assert not torch.allclose(term["inside"], term["teacher"])
    with pytest.raises(ValueError, match="structure"):
        teacher_loss(patches, specs, teacher, None, structure="ssim")
    assert teacher_loss(patches, specs, teacher, None).structure is None  # off by default
