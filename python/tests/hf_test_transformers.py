"""Hugging Face transformers models built from tiny configs (random weights, HF_HUB_OFFLINE=1,
nothing downloaded) through the real engine: load, tree, summary and profile on GPT-2, BERT,
Llama, T5 and ViT, with parameters checked against torch's own deduplicated count and tied
weights shown once.

Runs on interpreters with transformers (scripts/test.js: the torch2 venv; transformers 5 needs
torch 2.x).
"""

import importlib.util
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from engine_process import FIXTURES, EngineProcess  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"


def fx(name):
    return os.path.join(FIXTURES, name)


def fixture_model(name):
    spec = importlib.util.spec_from_file_location("hf_fixture_" + name[:-3], fx(name))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def torch_count(model):
    # parameters() yields each Parameter object once: a tied weight counts once.
    return sum(p.numel() for p in model.parameters())


class HuggingFaceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.engine = EngineProcess(env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def inspect_and_profile(self, name, type_name):
        e = self.engine
        r = e.request("model/load", {"file": fx(name)})
        self.assertEqual(r["type"], type_name)
        tree = e.request("model/tree", {"modelId": r["modelId"]})
        s = e.request("model/summary", {"modelId": r["modelId"]})
        model = fixture_model(name).model
        expected = torch_count(model)
        nodes = {m["path"]: m for m in tree["modules"]}
        self.assertEqual(nodes[""]["totalParams"], expected)
        self.assertEqual(s["totals"]["params"], expected)
        self.assertEqual(sum(p["tensor"]["numel"] for p in tree["parameters"]), expected)
        rows = {row["path"]: row for row in s["rows"]}
        self.assertIsNotNone(rows[""]["outputShape"])
        self.assertGreater(s["totals"]["executedMacs"], 0)
        p = e.request("profile/run", {"modelId": r["modelId"], "steps": 1, "warmup": 0})
        self.assertTrue(p["ops"])
        self.assertTrue(any(m["path"] == "" for m in p["modules"]))
        return r, tree, s, rows, model

    def test_gpt2_tied_weights_counted_once_and_shown_shared(self):
        r, tree, s, rows, model = self.inspect_and_profile("hf_gpt2_model.py", "GPT2LMHeadModel")
        self.assertIs(model.lm_head.weight, model.transformer.wte.weight)
        params = {p["name"]: p for p in tree["parameters"]}
        self.assertEqual(params["transformer.wte.weight"]["aliases"], ["lm_head.weight"])
        self.assertNotIn("lm_head.weight", params)
        self.assertEqual(rows[""]["outputType"], "CausalLMOutputWithCrossAttentions")
        self.assertEqual(rows["lm_head"]["outputShape"], [1, 8, 100])
        # Executed, per layer: c_attn 8·32·96, attention 2 heads·8·8·(16+16), c_proj 8·32·32,
        # MLP 2·8·32·128; then lm_head 8·32·100.
        per_layer = 8 * 32 * 96 + 2 * 8 * 8 * 32 + 8 * 32 * 32 + 2 * 8 * 32 * 128
        self.assertEqual(s["totals"]["executedMacs"], 2 * per_layer + 8 * 32 * 100)

    def test_gpt2_torchinfo_double_counts_tied_weights(self):
        import torchinfo

        model = fixture_model("hf_gpt2_model.py").model
        ti = torchinfo.summary(
            model, input_data={"input_ids": torch.randint(0, 100, (1, 8))}, verbose=0, device="cpu"
        )
        # torchinfo 1.8.0 counts every leaf's parameters: the tied lm_head.weight (100·32) is
        # counted under wte and again under lm_head. The right number is torch's deduplicated one.
        r = self.engine.request("model/load", {"file": fx("hf_gpt2_model.py")})
        s = self.engine.request("model/summary", {"modelId": r["modelId"]})
        self.assertEqual(ti.total_params, torch_count(model) + 100 * 32)
        self.assertEqual(s["totals"]["params"], torch_count(model))

    def test_bert_keyword_inputs(self):
        r, tree, s, rows, model = self.inspect_and_profile("hf_bert_model.py", "BertModel")
        self.assertEqual([i["name"] for i in r["inputs"]], ["input_ids", "attention_mask"])
        self.assertEqual(rows["encoder.layer.0.attention.self.query"]["outputShape"], [2, 8, 32])

    def test_llama_inferred_token_ids(self):
        r, tree, s, rows, model = self.inspect_and_profile("hf_llama_model.py", "LlamaForCausalLM")
        self.assertEqual(r["inputs"][0]["source"], "inferred")
        self.assertEqual(r["inputs"][0]["dtype"], "int64")
        self.assertEqual(rows["lm_head"]["outputShape"], [1, 8, 100])

    def test_t5_encoder_decoder(self):
        r, tree, s, rows, model = self.inspect_and_profile(
            "hf_t5_model.py", "T5ForConditionalGeneration"
        )
        self.assertEqual(rows["encoder"]["outputType"], "BaseModelOutputWithPastAndCrossAttentions")
        self.assertEqual(rows["lm_head"]["outputShape"], [1, 4, 100])
        params = {p["name"]: p for p in tree["parameters"]}
        # T5 shares one embedding between encoder, decoder and the input: one Parameter.
        self.assertIn("encoder.embed_tokens.weight", params["shared.weight"]["aliases"])

    def test_meta_device_allocates_no_weights(self):
        # The file builds `model = LlamaForCausalLM(config)` at import; under device "meta" the
        # engine imports it inside torch.device("meta"): same tree and counts, no weight memory.
        e = self.engine
        r = e.request("model/load", {"file": fx("meta_llama_model.py"), "device": "meta"})
        self.assertTrue(r["meta"])
        tree = e.request("model/tree", {"modelId": r["modelId"]})
        self.assertTrue(all(p["tensor"]["device"] == "meta" for p in tree["parameters"]))
        self.assertTrue(all("storage" not in p["tensor"] for p in tree["parameters"]))
        s = e.request("model/summary", {"modelId": r["modelId"]})
        model = fixture_model("meta_llama_model.py").model
        self.assertEqual(s["totals"]["params"], torch_count(model))
        rows = {row["path"]: row for row in s["rows"]}
        self.assertEqual(rows["lm_head"]["outputShape"], [1, 8, 256])
        cpu = e.request("model/load", {"file": fx("meta_llama_model.py")})
        s_cpu = e.request("model/summary", {"modelId": cpu["modelId"]})
        self.assertEqual(s["totals"]["executedMacs"], s_cpu["totals"]["executedMacs"])
        self.assertEqual(s["totals"]["macs"], s_cpu["totals"]["macs"])

    def test_vit(self):
        r, tree, s, rows, model = self.inspect_and_profile(
            "hf_vit_model.py", "ViTForImageClassification"
        )
        self.assertEqual(rows["classifier"]["outputShape"], [1, 10])
        self.assertEqual(
            rows["vit.embeddings.patch_embeddings.projection"]["outputShape"], [1, 32, 4, 4]
        )


if __name__ == "__main__":
    unittest.main()
