"""Tests for the tokenizer, the text encoder, cross-attention and the text-conditioned U-Net (chapter 06)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from diffusion_lab.data.shapes import caption_vocabulary, combinations
from diffusion_lab.models.attention import CrossAttention, attention_weights, record_cross_attention
from diffusion_lab.models.text import TextEncoder, TextEncoderConfig, Tokenizer
from diffusion_lab.models.text_unet import TextUNet, TextUNetConfig
from diffusion_lab.models.unet import UNet, UNetConfig
from diffusion_lab.pretrained import load_pretrained, save_pretrained
from diffusion_lab.schedules import NoiseSchedule


def tiny_text_config() -> TextUNetConfig:
    unet = dataclasses.replace(UNetConfig.tiny(), in_channels=3, out_channels=3, image_size=16,
                               cross_attention_resolutions=(8, 4), context_dim=16)
    return TextUNetConfig(unet, TextEncoderConfig(caption_vocabulary(), width=16, depth=1, num_heads=2))


# --- tokenizer -------------------------------------------------------------------------------------

def test_every_shapes_caption_round_trips():
    tok = Tokenizer(caption_vocabulary())
    captions = [a.caption() for a in combinations("all")]
    ids = tok.encode(captions)
    assert ids.shape == (len(captions), 12) and ids.dtype == torch.int64
    assert (ids[:, 0] == tok.start_id).all()
    assert tok.decode(ids) == captions
    assert len(caption_vocabulary()) == 20 and len(tok) == 23


def test_prompts_are_normalised():
    tok = Tokenizer(caption_vocabulary())
    assert tok.words("A Small, RED circle in the center!") == ["a", "small", "red", "circle", "in", "the", "centre"]
    assert torch.equal(tok.encode("a red circle"), tok.encode(["A red circle."]))


def test_padding_and_mask():
    tok = Tokenizer(caption_vocabulary(), max_length=6)
    ids = tok.encode(["a red circle", "circle"])
    assert ids.tolist()[1] == [tok.start_id, tok.ids["circle"], 0, 0, 0, 0]
    assert tok.mask(ids).sum(1).tolist() == [4, 2]


def test_unknown_word_is_a_clear_error_with_a_suggestion():
    tok = Tokenizer(caption_vocabulary())
    with pytest.raises(ValueError, match=r"unknown word 'gren' in the prompt 'a gren circle'\. Did you mean 'green'\?"):
        tok.encode("a gren circle")
    with pytest.raises(ValueError, match="knows only these words: a, in, the"):
        tok.encode("a dragon")


def test_unknown_words_can_map_to_unk():
    tok = Tokenizer(caption_vocabulary(), unknown="unk")
    ids = tok.encode("a dragon")
    assert ids[0, 2] == tok.unk_id and tok.decode(ids) == ["a <unk>"]


@pytest.mark.parametrize("prompt", ["", "   ", "!!"])
def test_empty_prompt_is_an_error_unless_allowed(prompt):
    tok = Tokenizer(caption_vocabulary())
    with pytest.raises(ValueError, match="has no words; describe the picture"):
        tok.encode(prompt)
    assert tok.encode(prompt, allow_empty=True).tolist() == tok.empty(1).tolist()
    assert tok.empty(3).shape == (3, 12) and (tok.mask(tok.empty(3)).sum(1) == 1).all()


def test_too_long_prompt_is_an_error():
    tok = Tokenizer(caption_vocabulary())
    with pytest.raises(ValueError, match="has 12 words but this model reads at most 11; shorten it"):
        tok.encode("a small red circle in the top left a small red circle")


@pytest.mark.parametrize("prompts", [3, None, [1, 2], ["a red circle", None], []])
def test_wrong_prompt_type_is_an_error(prompts):
    with pytest.raises(TypeError, match="must be a str"):
        Tokenizer(caption_vocabulary()).encode(prompts)


@pytest.mark.parametrize("kwargs, message", [
    ({"vocabulary": "abc"}, "sequence of non-empty words"),
    ({"vocabulary": ["a", "a"]}, "distinct"),
    ({"vocabulary": ["<pad>"]}, "distinct"),
    ({"vocabulary": ["a"], "max_length": 1}, "max_length must be an int >= 2"),
    ({"vocabulary": ["a"], "unknown": "skip"}, 'unknown must be "error" or "unk"'),
])
def test_bad_tokenizer_settings(kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        Tokenizer(**kwargs)


# --- text encoder ---------------------------------------------------------------------------------

def test_text_encoder_gives_one_vector_per_token():
    enc = TextEncoder(TextEncoderConfig(caption_vocabulary(), width=16, depth=1, num_heads=2))
    ids = enc.tokenizer.encode(["a red circle", "a large blue square in the centre"])
    out = enc(ids)
    assert out.shape == (2, 12, 16) and enc.dim == 16 and torch.isfinite(out).all()


def test_text_encoder_ignores_padding():
    """A prompt's vectors do not depend on how much padding follows it."""
    torch.manual_seed(0)
    short = TextEncoder(TextEncoderConfig(caption_vocabulary(), width=16, depth=2, num_heads=2, max_length=6))
    long = TextEncoder(TextEncoderConfig(caption_vocabulary(), width=16, depth=2, num_heads=2, max_length=12))
    state = long.state_dict()
    state["pos_embed"] = state["pos_embed"][:6].clone()
    short.load_state_dict(state)
    a = short(short.tokenizer.encode("a red circle"))[:, :4]
    b = long(long.tokenizer.encode("a red circle"))[:, :4]
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("ids, error, message", [
    (torch.zeros(2, 5, dtype=torch.long), ValueError, r"ids must be \(B, 12\)"),
    (torch.zeros(2, 12), TypeError, "integer token ids"),
    (torch.full((1, 12), 99), ValueError, r"must lie in \[0, 22\]"),
])
def test_text_encoder_input_errors(ids, error, message):
    with pytest.raises(error, match=message):
        TextEncoder(TextEncoderConfig(caption_vocabulary()))(ids)


# --- cross-attention --------------------------------------------------------------------------------

def test_cross_attention_matches_the_formula_written_out():
    torch.manual_seed(0)
    block = CrossAttention(channels=8, context_dim=6, num_heads=2, num_groups=2)
    nn.init.normal_(block.proj.weight)  # zero-initialised: give the branch something to show
    x, context = torch.randn(3, 8, 4, 4), torch.randn(3, 5, 6)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    # The same computation, one head at a time, by hand.
    tokens = block.norm(x).flatten(2).transpose(1, 2)  # (B, 16, 8)
    q, k, v = block.to_q(tokens), block.to_k(context), block.to_v(context)
    heads = []
    for h in range(2):
        sl = slice(4 * h, 4 * h + 4)
        scores = q[..., sl] @ k[..., sl].transpose(1, 2) / 2.0  # sqrt(4) = 2
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        heads.append(scores.softmax(-1) @ v[..., sl])
    expected = x + block.proj(torch.cat(heads, -1)).transpose(1, 2).reshape(3, 8, 4, 4)
    torch.testing.assert_close(block(x, context, mask), expected)


def test_cross_attention_ignores_masked_tokens():
    torch.manual_seed(0)
    block = CrossAttention(8, 6, 2, 2)
    nn.init.normal_(block.proj.weight)
    x, context = torch.randn(2, 8, 4, 4), torch.randn(2, 5, 6)
    mask = torch.tensor([[1, 1, 0, 0, 0]] * 2, dtype=torch.bool)
    changed = context.clone()
    changed[:, 2:] = 100.0
    torch.testing.assert_close(block(x, context, mask), block(x, changed, mask))
    assert not torch.allclose(block(x, context), block(x, changed))


def test_attention_weights_sum_to_one_and_skip_masked_keys():
    q, k = torch.randn(2, 3, 7, 4), torch.randn(2, 3, 5, 4)
    mask = torch.tensor([True, True, False, True, False])[None, None, None, :]
    w = attention_weights(q, k, mask)
    assert w.shape == (2, 3, 7, 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 7))
    assert (w[..., ~mask[0, 0, 0]] == 0).all()


def test_record_cross_attention_keeps_one_map_per_call_and_then_stops():
    torch.manual_seed(0)
    model = TextUNet(tiny_text_config()).eval()
    ids = model.encode_prompts(["a red circle", "a blue square in the top left"])
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10, 500])
    with record_cross_attention(model) as maps:
        model(x, t, ids)
        model(x, t, ids)
    # cross-attention at 8 (down and up) and 4 (down, up and the middle block)
    assert set(maps) == {"unet.down.1.xattn.0", "unet.down.2.xattn.0", "unet.mid.xattn", "unet.up.1.xattn.0",
                         "unet.up.2.xattn.0"}
    first = maps["unet.down.1.xattn.0"]
    assert len(first) == 2 and first[0].shape == (2, 2, 64, 12)  # (B, heads, 8*8 pixels, 12 tokens)
    torch.testing.assert_close(first[0].sum(-1), torch.ones(2, 2, 64))
    assert (first[0][0, :, :, 4:] == 0).all()  # "a red circle" = <start> + 3 words; the rest is padding
    assert all(not m.keep_weights and not m.recorded for m in model.modules() if isinstance(m, CrossAttention))
    with pytest.raises(ValueError, match="no cross-attention"):
        with record_cross_attention(UNet(UNetConfig.tiny())):
            pass


# --- the U-Net with text ------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"context_dim": 16}, "context_dim and cross_attention_resolutions go together"),
    ({"cross_attention_resolutions": (14,)}, "go together"),
    ({"cross_attention_resolutions": (5,), "context_dim": 16}, "cross-attention resolution 5 is never reached"),
    ({"cross_attention_resolutions": (28,), "context_dim": 0}, "context_dim must be a positive int"),
])
def test_bad_text_config(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(UNetConfig.mnist(), **changes)


def test_unet_context_errors():
    text_unet = UNet(tiny_text_config().unet)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="this model reads text: pass context"):
        text_unet(x, t)
    with pytest.raises(ValueError, match=r"context must be \(B, L, context_dim\) = \(2, L, 16\)"):
        text_unet(x, t, context=torch.randn(2, 12, 8))
    with pytest.raises(ValueError, match="context_mask must be a bool tensor of shape"):
        text_unet(x, t, context=torch.randn(2, 12, 16), context_mask=torch.ones(2, 12))
    with pytest.raises(ValueError, match="context given to a model without text conditioning"):
        UNet(UNetConfig.tiny())(torch.randn(2, 1, 28, 28), t, context=torch.randn(2, 12, 16))


def test_unconditional_unet_state_dict_is_unchanged_by_the_text_hooks():
    """Shipped MNIST checkpoints predate cross-attention: a model without text has no new weights."""
    names = set(UNet(UNetConfig.mnist()).state_dict())
    assert not any("xattn" in n for n in names)


def test_text_unet_forward_and_empty_prompt():
    torch.manual_seed(0)
    model = TextUNet(tiny_text_config()).eval()
    for m in model.modules():  # zero-initialised outputs would hide the text's effect
        if isinstance(m, CrossAttention):
            nn.init.normal_(m.proj.weight)
    nn.init.normal_(model.unet.conv_out.weight, std=0.1)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([5, 900])
    ids = model.encode_prompts(["a red circle", "a blue square"])
    out = model(x, t, ids)
    assert out.shape == x.shape
    torch.testing.assert_close(model(x, t), model(x, t, model.null_condition(2)))
    assert not torch.allclose(out, model(x, t))  # the prompt changes the prediction
    with pytest.raises(ValueError, match=r"cond must be token ids \(B, L\) with B = 2"):
        model(x, t, ids[:1])


def test_text_unet_config_checks_widths():
    with pytest.raises(ValueError, match="make UNetConfig.context_dim equal TextEncoderConfig.width"):
        TextUNetConfig(tiny_text_config().unet, TextEncoderConfig(caption_vocabulary(), width=32))


def test_a_different_encoder_can_stand_in():
    """Anything with tokenizer, dim and forward(ids) -> (B, L, dim) works, e.g. a frozen one."""

    class BagOfWords(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tokenizer = Tokenizer(caption_vocabulary())
            self.dim = 16
            self.table = nn.Embedding(len(self.tokenizer), 16)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.table(ids)

    encoder = BagOfWords().requires_grad_(False)
    model = TextUNet(tiny_text_config(), text_encoder=encoder)
    out = model(torch.randn(1, 3, 16, 16), torch.tensor([3]), model.encode_prompts("a red circle"))
    out.sum().backward()
    assert encoder.table.weight.grad is None and model.unet.conv_in.weight.grad is not None


def test_text_unet_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = TextUNet(tiny_text_config())
    save_pretrained("text", model, model.config, kind="text_unet", schedule=NoiseSchedule.from_name("cosine", 1000),
                    made_by={}, root=tmp_path)
    pre = load_pretrained("text", root=tmp_path)
    assert pre.model.config == model.config and pre.model.tokenizer.vocabulary == caption_vocabulary()
    x, t, ids = torch.randn(1, 3, 16, 16), torch.tensor([7]), model.encode_prompts("a red circle")
    torch.testing.assert_close(pre.model(x, t, ids), model.eval()(x, t, ids))
