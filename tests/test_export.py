"""PyTorch -> ONNX parity: the fp32 graph must reproduce PyTorch eager greedy decoding
token for token (the quantized graphs' agreement is reported by `python -m export.parity`)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def hf_and_tok():
    from export.base_model import load_hf

    return load_hf()


@pytest.fixture(scope="module")
def fp32_lm(bundle_dir):
    from npc_brain.bench import FP32_PATH, ensure_variant_graphs
    from npc_brain.lm import LanguageModel

    ensure_variant_graphs(bundle_dir)
    return LanguageModel(FP32_PATH, threads=2)


def test_our_torch_module_matches_transformers(hf_and_tok):
    from export.llama import load_from_hf

    hf, tok = hf_and_tok
    ours = load_from_hf(hf)
    ids = torch.tensor([tok("<|im_start|>user\nHello there<|im_end|>\n").input_ids])
    with torch.no_grad():
        ref = hf(ids).logits[:, -1]
        got = ours(ids, torch.arange(ids.shape[1])[None], torch.ones_like(ids), *ours.empty_past())[0]
    assert torch.allclose(ref, got, atol=1e-3)


def test_fp32_onnx_greedy_equals_pytorch_token_for_token(fp32_lm):
    from export.parity import PROMPTS, greedy_onnx, greedy_torch, prompt_ids, reference_model

    hf, tok = reference_model()  # the weights the graph was exported from (base + installed adapter)
    for system, user in PROMPTS:
        ids = prompt_ids(tok, system, user)
        assert greedy_onnx(fp32_lm, ids, 24) == greedy_torch(hf, ids, 24), (system, user)


def test_bundle_manifest_is_complete(bundle_dir):
    from npc_brain.bundle import FORMAT_VERSION, Bundle

    b = Bundle.open(bundle_dir)
    m = b.manifest
    assert m["format_version"] == FORMAT_VERSION and m["prompt_template"]
    assert m["provenance"]["base_model"]["sha256"] and m["provenance"]["build_key"]
    assert set(m["lm"]) == {"prefill", "decode"}
    assert all(len(h) == 64 for h in m["components"].values())
    assert b.bundle_id.startswith("b-")


def test_a_bundle_for_another_prompt_template_is_refused(bundle_dir, tmp_path):
    import json

    import pytest

    from npc_brain.bundle import Bundle, BundleError
    from npc_brain.prompt import TEMPLATE_VERSION

    m = json.loads((bundle_dir / "manifest.json").read_text())
    assert m["prompt_template"] == TEMPLATE_VERSION
    m["prompt_template"] = "chatml-npc-0"
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="prompt template 'chatml-npc-0'.*rebuild"):
        Bundle.open(tmp_path)


def test_bundle_build_is_cached(bundle_dir):
    from export.bundle import build_bundle

    build_bundle(bundle_dir, log=lambda _: None)  # (re)builds only if the recipe changed under us
    logs = []
    build_bundle(bundle_dir, log=logs.append)
    assert logs and "up to date" in logs[0]
