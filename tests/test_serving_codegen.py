"""The checked-in stubs in fedembed/serving/_proto/ must be what protos/ generates today."""
from __future__ import annotations

import shutil

from fedembed.serving import codegen


def test_generated_stubs_match_the_proto():
    stale = codegen.drift()
    assert not stale, f"stubs drifted from protos/: {stale}; run `python -m fedembed.serving.codegen`"


def test_drift_is_detected(tmp_path):
    for name in codegen.PROTOS:
        shutil.copy(codegen.PROTO_DIR / name, tmp_path / name)
    proto = tmp_path / codegen.PROTOS[0]
    proto.write_text(proto.read_text() + "\nmessage AddedLater { string x = 1; }\n")
    assert "embedding_service_pb2.py" in codegen.drift(proto_dir=tmp_path)
