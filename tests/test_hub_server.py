"""The local Hub server (tests/hub_server.py) against the real huggingface_hub, transformers and timm clients.

Client code runs in subprocesses (``run_hub_client``): this process imported ``huggingface_hub`` in offline mode
(tests/conftest.py), and its endpoint/offline constants are read at import time. The server runs in a thread here,
so the tests can inspect what it stored and received.

The "shared repo" tests build on one module-scoped upload and run in file order (the second-commit test changes
``notes.txt`` on ``main``); the model tests share one heavy client process (module fixture ``model_roundtrip``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from tests.hub_server import HubServer, git_blob_sha1, hub_server, run_hub_client  # noqa: F401 - fixture

BIG_SIZE = 10 * 1024 * 1024 + 17  # over the Hub's 10 MB rule, with a text extension/content: LFS by size only
README = """---
license: apache-2.0
library_name: hfkd
tags:
- knowledge-distillation
- image-classification
datasets:
- uoft-cs/cifar100
---

# Tiny test card

Some text.
"""


def _local_files(folder) -> dict[str, bytes]:
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------------------------ shared repo
@pytest.fixture(scope="module")
def shared_hub():
    with HubServer() as server:
        yield server


@pytest.fixture(scope="module")
def uploaded(shared_hub, tmp_path_factory):
    """One repo created and filled with ``upload_folder`` (regular, LFS-by-extension, LFS-by-size files)."""
    home = tmp_path_factory.mktemp("hub_home")
    folder = home / "upload"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("hello hub\n")
    (folder / "sub" / "nested.json").write_text(json.dumps({"a": 1}))
    (folder / "README.md").write_text(README)
    (folder / "weights.safetensors").write_bytes(os.urandom(4096))
    line = b"0123456789abcdef" * 7 + b"\n"
    (folder / "big.txt").write_bytes((line * (BIG_SIZE // len(line) + 1))[:BIG_SIZE])
    result = run_hub_client(shared_hub, home, f"""
        from huggingface_hub import HfApi
        api = HfApi()
        url = api.create_repo("shared-model")
        again = api.create_repo("shared-model", exist_ok=True)
        try:
            api.create_repo("shared-model")
            conflict = None
        except Exception as exc:
            conflict = error_info(exc)
        info = api.upload_folder(repo_id=url.repo_id, folder_path={str(folder)!r}, commit_message="Upload folder")
        emit({{"repo_id": url.repo_id, "url": str(url), "again": str(again), "conflict": conflict,
               "commit": info.oid, "commit_url": info.commit_url}})
    """)
    return {"home": home, "folder": folder, "files": _local_files(folder), **result}


def test_create_repo_and_upload_folder(shared_hub, uploaded):
    repo_id = uploaded["repo_id"]
    assert repo_id == f"{shared_hub.user}/shared-model"  # no namespace given: the token's user
    assert uploaded["url"] == uploaded["again"] == f"{shared_hub.url}/{repo_id}"
    assert uploaded["conflict"]["status"] == 409 and "HfHubHTTPError" in uploaded["conflict"]["mro"]

    stored = shared_hub.repo_files(repo_id)
    assert set(stored) == set(uploaded["files"]) | {".gitattributes"}
    assert all(stored[path] == content for path, content in uploaded["files"].items())
    commits = shared_hub.commits(repo_id)
    assert len(commits) == 2 and commits[-1] == uploaded["commit"]  # creation commit + upload
    assert uploaded["commit_url"].endswith(f"/{repo_id}/commit/{uploaded['commit']}")

    # The two LFS files went through the batch API and a PUT to the storage origin; the others were inlined.
    puts = {r.path.rsplit("/", 1)[-1] for r in shared_hub.requests if r.server == "cdn" and r.method == "PUT"}
    files = uploaded["files"]
    assert puts >= {hashlib.sha256(files[name]).hexdigest() for name in ("weights.safetensors", "big.txt")}
    assert hashlib.sha256(files["notes.txt"]).hexdigest() not in puts


def test_list_files_model_info_and_card(shared_hub, uploaded):
    result = run_hub_client(shared_hub, uploaded["home"], f"""
        from huggingface_hub import HfApi, ModelCard
        api = HfApi()
        repo_id = {uploaded["repo_id"]!r}
        info = api.model_info(repo_id, files_metadata=True)
        card = ModelCard.load(repo_id)
        top = api.list_repo_tree(repo_id)
        emit({{
            "files": api.list_repo_files(repo_id),
            "sha": info.sha,
            "siblings": {{s.rfilename: [s.size, s.blob_id, s.lfs.sha256 if s.lfs else None] for s in info.siblings}},
            "card_data": info.card_data.to_dict(),
            "tags": info.tags,
            "loaded_card": card.data.to_dict(),
            "card_text": card.text,
            "top": sorted((type(e).__name__, e.path) for e in top),
            "sub": [e.path for e in api.list_repo_tree(repo_id, path_in_repo="sub")],
            "commits": [c.commit_id for c in api.list_repo_commits(repo_id)],
            "branches": [b.name for b in api.list_repo_refs(repo_id).branches],
            "exists": [api.file_exists(repo_id, "notes.txt"), api.file_exists(repo_id, "missing.txt"),
                       api.repo_exists(repo_id), api.repo_exists("nobody/nothing")],
        }})
    """)
    files = uploaded["files"]
    assert sorted(result["files"]) == sorted(set(files) | {".gitattributes"})
    assert result["sha"] == uploaded["commit"]
    siblings = result["siblings"]
    assert siblings["notes.txt"] == [len(files["notes.txt"]), git_blob_sha1(files["notes.txt"]), None]
    assert siblings["weights.safetensors"][2] == hashlib.sha256(files["weights.safetensors"]).hexdigest()
    assert siblings["big.txt"][0] == BIG_SIZE and siblings["big.txt"][2] is not None
    assert siblings["sub/nested.json"][2] is None
    for card in (result["card_data"], result["loaded_card"]):
        assert card["license"] == "apache-2.0"
        assert card["tags"] == ["knowledge-distillation", "image-classification"]
        assert card["datasets"] == ["uoft-cs/cifar100"]
    assert "knowledge-distillation" in result["tags"]
    assert "# Tiny test card" in result["card_text"]
    assert ["RepoFolder", "sub"] in result["top"] and ["RepoFile", "notes.txt"] in result["top"]
    assert ["RepoFile", "sub/nested.json"] not in result["top"]
    assert result["sub"] == ["sub/nested.json"]
    assert result["commits"] == list(reversed(shared_hub.commits(uploaded["repo_id"])))
    assert result["branches"] == ["main"]
    assert result["exists"] == [True, False, True, False]


def test_hf_hub_download_and_snapshot_download(shared_hub, uploaded):
    result = run_hub_client(shared_hub, uploaded["home"], f"""
        from huggingface_hub import hf_hub_download, snapshot_download
        repo_id = {uploaded["repo_id"]!r}
        paths = {{name: hf_hub_download(repo_id, name) for name in ["notes.txt", "weights.safetensors", "big.txt"]}}
        paths["sub/nested.json"] = hf_hub_download(repo_id, "nested.json", subfolder="sub")
        emit({{"paths": paths, "snapshot": snapshot_download(repo_id),
               "local_dir": snapshot_download(repo_id, local_dir="local_copy", allow_patterns=["*.txt"])}})
    """)
    files = uploaded["files"]
    for name, path in result["paths"].items():
        assert open(path, "rb").read() == files[name], name
    assert _local_files(result["snapshot"]) == {**files, ".gitattributes": shared_hub.repo_files(
        uploaded["repo_id"])[".gitattributes"]}
    assert os.path.basename(result["snapshot"]) == uploaded["commit"]
    local = _local_files(result["local_dir"])
    assert {k: v for k, v in local.items() if not k.startswith(".cache/")} == {
        "notes.txt": files["notes.txt"], "big.txt": files["big.txt"]}
    # LFS files are served like on the Hub: a 302 from /resolve (metadata on the redirect), bytes from storage.
    resolve = [r for r in shared_hub.requests if r.method == "HEAD" and r.path.endswith("/weights.safetensors")]
    assert resolve and resolve[0].status == 302
    assert any(r.server == "cdn" and r.method == "GET" and r.status == 200 for r in shared_hub.requests)


def test_second_commit_then_download_old_revision(shared_hub, uploaded):
    first = uploaded["commit"]
    result = run_hub_client(shared_hub, uploaded["home"], f"""
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download
        api = HfApi()
        repo_id = {uploaded["repo_id"]!r}
        info = api.create_commit(repo_id, commit_message="Change notes", operations=[
            CommitOperationAdd("notes.txt", b"changed notes\\n"),
            CommitOperationAdd("weights.safetensors", b"\\x00\\x01 new weights"),
            CommitOperationDelete("sub/"),
        ])
        unchanged = api.upload_file(repo_id=repo_id, path_or_fileobj=b"changed notes\\n", path_in_repo="notes.txt")
        emit({{
            "second": info.oid, "unchanged": unchanged.oid,
            "new": open(hf_hub_download(repo_id, "notes.txt"), "rb").read().decode(),
            "old": open(hf_hub_download(repo_id, "notes.txt", revision={first!r}), "rb").read().decode(),
            "old_lfs": open(hf_hub_download(repo_id, "weights.safetensors", revision={first!r}), "rb").read().hex(),
            "new_lfs": open(hf_hub_download(repo_id, "weights.safetensors"), "rb").read().hex(),
            "old_short": open(hf_hub_download(repo_id, "sub/nested.json", revision={first[:10]!r})).read(),
            "files_now": api.list_repo_files(repo_id),
        }})
    """)
    files = uploaded["files"]
    assert result["new"] == "changed notes\n"
    assert result["old"] == files["notes.txt"].decode()
    assert bytes.fromhex(result["old_lfs"]) == files["weights.safetensors"]
    assert bytes.fromhex(result["new_lfs"]) == b"\x00\x01 new weights"
    assert result["old_short"] == files["sub/nested.json"].decode()
    assert "sub/nested.json" not in result["files_now"]
    # Re-uploading identical content is a no-op on the client side: no empty commit.
    assert result["unchanged"] == result["second"]
    assert shared_hub.commits(uploaded["repo_id"])[-2:] == [first, result["second"]]
    assert shared_hub.repo_files(uploaded["repo_id"], revision=first)["notes.txt"] == files["notes.txt"]


def test_error_types(shared_hub, uploaded):
    result = run_hub_client(shared_hub, uploaded["home"], f"""
        from huggingface_hub import HfApi, hf_hub_download
        api = HfApi()
        repo_id = {uploaded["repo_id"]!r}
        calls = {{
            "missing_file": lambda: hf_hub_download(repo_id, "does-not-exist.txt"),
            "missing_repo": lambda: hf_hub_download("nobody/nothing", "config.json"),
            "missing_repo_info": lambda: api.model_info("nobody/nothing"),
            "bad_revision": lambda: hf_hub_download(repo_id, "notes.txt", revision="no-such-branch"),
            "bad_yaml": lambda: api.upload_file(repo_id=repo_id, path_in_repo="README.md",
                                                path_or_fileobj=b"---\\nlicense: [unclosed\\n---\\ntext\\n"),
            "bad_token": lambda: api.whoami(token="hf_not_the_right_token"),
            "no_write_access": lambda: api.create_repo("someone-else/repo"),
        }}
        out = {{}}
        for name, call in calls.items():
            try:
                call()
                out[name] = None
            except Exception as exc:
                out[name] = error_info(exc)
        emit(out)
    """)
    assert "EntryNotFoundError" in result["missing_file"]["mro"]
    assert result["missing_repo"]["type"] == "RepositoryNotFoundError"
    assert result["missing_repo_info"]["type"] == "RepositoryNotFoundError"
    assert result["bad_revision"]["type"] == "RevisionNotFoundError"
    assert result["bad_yaml"]["type"] == "ValueError" and "Invalid metadata" in result["bad_yaml"]["message"]
    assert result["bad_token"]["status"] == 401 and "HfHubHTTPError" in result["bad_token"]["mro"]
    assert result["no_write_access"]["status"] == 403
    assert shared_hub.repo_files(uploaded["repo_id"])["README.md"] == README.encode()


# ------------------------------------------------------------------------------------------------ failures
def test_refusing_server_raises_401(hub_server, tmp_path):
    hub_server.create_repo(f"{hub_server.user}/target")
    hub_server.set_refusing(True)
    result = run_hub_client(hub_server, tmp_path, f"""
        from huggingface_hub import HfApi
        api = HfApi()
        out = {{}}
        for name, call in {{
            "whoami": lambda: api.whoami(),
            "upload": lambda: api.upload_file(repo_id="{hub_server.user}/target", path_in_repo="x.bin",
                                              path_or_fileobj=b"\\x00" * 64),
        }}.items():
            try:
                call()
                out[name] = None
            except Exception as exc:
                out[name] = error_info(exc)
        emit(out)
    """)
    for name in ("whoami", "upload"):
        assert result[name]["status"] == 401, result[name]
        assert "HfHubHTTPError" in result[name]["mro"], result[name]
    assert len(hub_server.commits(f"{hub_server.user}/target")) == 1
    assert hub_server.requests and all(r.status == 401 for r in hub_server.requests)

    hub_server.set_refusing(True, mode="close")
    closed = run_hub_client(hub_server, tmp_path, """
        from huggingface_hub import HfApi
        try:
            HfApi().whoami()
            emit(None)
        except Exception as exc:
            emit(error_info(exc))
    """)
    assert closed["type"] == "RemoteProtocolError", closed

    hub_server.set_refusing(False)
    assert run_hub_client(hub_server, tmp_path, "from huggingface_hub import HfApi\nemit(HfApi().whoami()['name'])") \
        == hub_server.user


def test_stopped_server_raises_connection_error(hub_server, tmp_path):
    repo_id = f"{hub_server.user}/cached"
    hub_server.create_repo(repo_id)
    cached = run_hub_client(hub_server, tmp_path, f"""
        from huggingface_hub import hf_hub_download
        emit(hf_hub_download("{repo_id}", ".gitattributes"))
    """)
    hub_server.stop()
    result = run_hub_client(hub_server, tmp_path, f"""
        from huggingface_hub import HfApi, hf_hub_download
        out = {{}}
        for name, call in {{
            "whoami": lambda: HfApi().whoami(),
            "create_repo": lambda: HfApi().create_repo("anything"),
            "model_info": lambda: HfApi().model_info("{repo_id}"),
            "cached_download": lambda: hf_hub_download("{repo_id}", ".gitattributes"),
        }}.items():
            try:
                out[name] = call()
                out[name] = str(out[name]) if name == "cached_download" else None
            except Exception as exc:
                out[name] = error_info(exc)
        emit(out)
    """)
    for name in ("whoami", "create_repo", "model_info"):
        assert result[name]["type"] == "ConnectError", result[name]
    # With the Hub unreachable, hf_hub_download falls back to the cached copy (no retries: it is cached).
    # NB: for an *uncached* file it retries with backoff (~23 s) before raising LocalEntryNotFoundError.
    assert result["cached_download"] == cached


# ------------------------------------------------------------------------------------------------ models
@pytest.fixture(scope="module")
def model_roundtrip(shared_hub, tmp_path_factory):
    """Tiny transformers + timm models saved here, uploaded, then loaded, re-pushed and Trainer-pushed elsewhere.

    The heavy client process (torch + transformers + timm import) runs once for all the model tests.
    """
    import timm
    from timm.models import save_for_hf
    from transformers import ResNetConfig, ResNetForImageClassification

    home = tmp_path_factory.mktemp("model_home")
    torch.manual_seed(0)
    config = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                          layer_type="basic", num_labels=3)
    hf_model = ResNetForImageClassification(config).eval()
    hf_model.save_pretrained(home / "hf_model")
    timm_model = timm.create_model("test_resnet", num_classes=3).eval()
    save_for_hf(timm_model, str(home / "timm_model"), model_config={"num_classes": 3}, safe_serialization=True)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = {"hf": hf_model(x).logits, "timm": timm_model(x)}
    torch.save(x, home / "x.pt")

    run_hub_client(shared_hub, home, f"""
        from huggingface_hub import HfApi
        api = HfApi()
        for name, folder in (("tiny-resnet", "hf_model"), ("tiny-timm", "timm_model")):
            repo_id = api.create_repo(name, exist_ok=True).repo_id
            api.upload_folder(repo_id=repo_id, folder_path={str(home)!r} + "/" + folder)
        emit(True)
    """)
    user = shared_hub.user
    result = run_hub_client(shared_hub, home, f"""
        import torch, timm
        from timm.models import push_to_hf_hub
        from transformers import AutoModelForImageClassification, Trainer, TrainingArguments

        x = torch.load({str(home / "x.pt")!r})
        out = {{}}
        hf_model = AutoModelForImageClassification.from_pretrained("{user}/tiny-resnet").eval()
        timm_model = timm.create_model("hf-hub:{user}/tiny-timm", pretrained=True).eval()
        with torch.no_grad():
            out["hf_logits"] = hf_model(x).logits.tolist()
            out["timm_logits"] = timm_model(x).tolist()
        out["hf_class"] = type(hf_model).__name__
        out["hf_push"] = hf_model.push_to_hub("tiny-resnet-repush", commit_message="repush").oid
        out["timm_push"] = push_to_hf_hub(timm_model, "tiny-timm-repush", safe_serialization=True,
                                          model_config={{"num_classes": 3}})

        class Data(torch.utils.data.Dataset):
            def __len__(self):
                return 8

            def __getitem__(self, i):
                return {{"pixel_values": torch.randn(3, 32, 32), "labels": i % 3}}

        args = TrainingArguments(output_dir="trainer_out", push_to_hub=True, hub_model_id="trainer-push",
                                 max_steps=2, per_device_train_batch_size=4, save_strategy="steps", save_steps=1,
                                 report_to=[], use_cpu=True, disable_tqdm=True)
        trainer = Trainer(model=hf_model.train(), args=args, train_dataset=Data())
        trainer.train()
        out["trainer_push"] = trainer.push_to_hub(commit_message="End of training").oid
        emit(out)
    """, timeout=600)
    return {"expected": expected, **result}


def test_transformers_from_pretrained_same_logits(model_roundtrip):
    assert model_roundtrip["hf_class"] == "ResNetForImageClassification"
    torch.testing.assert_close(torch.tensor(model_roundtrip["hf_logits"]), model_roundtrip["expected"]["hf"],
                               rtol=0, atol=1e-5)


def test_timm_hf_hub_pretrained_same_logits(model_roundtrip):
    torch.testing.assert_close(torch.tensor(model_roundtrip["timm_logits"]), model_roundtrip["expected"]["timm"],
                               rtol=0, atol=1e-5)


def test_transformers_and_timm_push_paths(shared_hub, model_roundtrip):
    from safetensors.torch import load as load_safetensors

    user = shared_hub.user
    original = shared_hub.repo_files(f"{user}/tiny-resnet")
    repushed = shared_hub.repo_files(f"{user}/tiny-resnet-repush")
    assert shared_hub.commits(f"{user}/tiny-resnet-repush")[-1] == model_roundtrip["hf_push"]
    assert {"config.json", "model.safetensors", "README.md"} <= set(repushed)
    before, after = load_safetensors(original["model.safetensors"]), load_safetensors(repushed["model.safetensors"])
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)

    timm_files = shared_hub.repo_files(f"{user}/tiny-timm-repush")
    assert {"config.json", "model.safetensors", "README.md"} <= set(timm_files)
    assert json.loads(timm_files["config.json"])["architecture"] == "test_resnet"
    assert model_roundtrip["timm_push"].endswith(shared_hub.commits(f"{user}/tiny-timm-repush")[-1])


def test_trainer_push_to_hub(shared_hub, model_roundtrip):
    repo_id = f"{shared_hub.user}/trainer-push"
    commits = shared_hub.commits(repo_id)
    assert commits[-1] == model_roundtrip["trainer_push"]
    assert len(commits) >= 3  # creation, checkpoint pushes (hub_strategy="every_save"), end of training
    files = shared_hub.repo_files(repo_id)
    assert {"config.json", "model.safetensors", "training_args.bin", "README.md"} <= set(files)
    assert b"trainer-push" in files["README.md"]
