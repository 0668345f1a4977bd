"""The evaluation networks: every registered net maps (B, T, 3, H, W) clips of any length to (B, classes) logits,
trains (gradients reach every parameter), refuses bad input with a clear error; the MLP / RNN / GRU specifics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compressa_hf.nets import GRU, MLP, NETS, RNN, ConvNet, ConvNet3D, build_net

SIZE, CLASSES = 16, 4


def tiny(name: str, **kw) -> nn.Module:
    torch.manual_seed(0)
    return build_net(name, CLASSES, SIZE, width=8, **kw)


def test_registry_has_the_five_cross_architecture_nets():
    assert NETS == {"convnet": ConvNet, "convnet3d": ConvNet3D, "mlp": MLP, "rnn": RNN, "gru": GRU}
    for name, cls in NETS.items():
        assert type(tiny(name)) is cls


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("frames", [1, 3, 8])
def test_logits_shape_for_any_number_of_frames(name, frames):
    out = tiny(name)(torch.rand(2, frames, 3, SIZE, SIZE))
    assert out.shape == (2, CLASSES) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(NETS))
def test_gradients_reach_every_parameter(name):
    net = tiny(name).train()
    loss = nn.functional.cross_entropy(net(torch.rand(3, 3, 3, SIZE, SIZE)), torch.tensor([0, 1, 2]))
    loss.backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", ["convnet", "mlp", "rnn", "gru"])
def test_forward_is_classifier_of_embed(name):
    net = tiny(name).eval()
    clip = torch.rand(2, 3, 3, SIZE, SIZE)
    emb = net.embed(clip)
    assert emb.shape == (2, net.num_features) and isinstance(net.classifier, nn.Linear)
    torch.testing.assert_close(net(clip), net.classifier(emb))


def test_mlp_is_a_per_frame_three_layer_perceptron_averaged_over_time():
    net = tiny("mlp")
    assert [m.in_features for m in (net.fc1, net.fc2, net.classifier)] == [3 * SIZE * SIZE, 8, 8]
    clip = torch.rand(2, 3, 3, SIZE, SIZE)
    torch.testing.assert_close(net(clip), net(clip.flip(1)))  # order-free
    manual = torch.stack([torch.relu(net.fc2(torch.relu(net.fc1(clip[:, i].flatten(1))))) for i in range(3)]).mean(0)
    torch.testing.assert_close(net.embed(clip), manual)


@pytest.mark.parametrize("name, cell", [("rnn", nn.RNN), ("gru", nn.GRU)])
def test_recurrent_nets_use_frame_order_and_average_their_outputs(name, cell):
    net = tiny(name).eval()
    assert type(net.recurrent) is cell and net.recurrent.hidden_size == 8
    clip = torch.rand(1, 4, 3, SIZE, SIZE)
    assert not torch.allclose(net(clip), net(clip.flip(1)))
    # Mean of the outputs over time, not the last state: the embedding of a clip is the mean of its steps' outputs.
    feats = net.pool(net.features(clip[0])).flatten(1).unsqueeze(0)
    outputs, _ = net.recurrent(feats)
    torch.testing.assert_close(net.embed(clip), outputs.mean(1))


def test_recurrent_nets_take_any_frame_size_and_norm():
    net = build_net("gru", CLASSES, 32, width=8, norm="groupnorm")
    assert isinstance(net.features[1], nn.GroupNorm) and net.features[1].num_groups == 4
    assert net(torch.rand(1, 2, 3, 24, 40)).shape == (1, CLASSES)  # adaptive pooling: not tied to 32x32


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: build_net("lstm", 3, SIZE), "unknown network 'lstm'"),
        (lambda: MLP(3, size=SIZE, norm="instancenorm"), "MLP has no normalisation"),
        (lambda: RNN(3, size=SIZE, norm="layer"), "unknown norm 'layer'"),
        (lambda: GRU(3, size=4), "at least 8, got 4x4"),
        (lambda: RNN(3, size=SIZE, grid=0), "grid >= 1, got 0"),
        (lambda: MLP(3, size=SIZE, width=4)(torch.rand(1, 2, 3, 32, 32)), "built for 16x16 frames, got 32x32"),
        (lambda: MLP(3, size=SIZE, width=4)(torch.rand(1, 2, 1, SIZE, SIZE)), "3-channel frames, got 1"),
        (lambda: GRU(3, size=SIZE, width=4)(torch.rand(1, 2, 4, SIZE, SIZE)), "3-channel frames, got 4"),
        (lambda: RNN(3, size=SIZE, width=4)(torch.rand(1, 2, 3, 4, 4)), "at least 8x8, got 4x4"),
    ],
)
def test_bad_arguments_and_shapes_say_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("name", sorted(NETS))
def test_non_clip_input_is_refused(name):
    with pytest.raises(ValueError, match="clips shaped \\(B, T, C, H, W\\)"):
        tiny(name)(torch.rand(3, SIZE, SIZE))


@pytest.mark.parametrize("name", sorted(NETS))
def test_a_single_frame_tensor_is_a_one_frame_clip(name):
    net = tiny(name).eval()
    frames = torch.rand(2, 3, SIZE, SIZE)
    torch.testing.assert_close(net(frames), net(frames.unsqueeze(1)))
