"""The Open Inference Protocol as the real tritonclient.http client speaks it: health, metadata,
infer with JSON and with binary tensors; predictions equal onnxruntime's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from tests.evaluation.models import run_onnx, split
from tests.serving.conftest import deployment, get, iris_request, post
from tritonclient.utils import InferenceServerException


@pytest.fixture
def iris_server(servers: Any, models: dict[str, Path]) -> Any:
    return servers([deployment("blue", models["iris_zipmap"], 3)]).start()


def client(server: Any) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")


def test_health_and_metadata_through_tritonclient(iris_server: Any) -> None:
    c = client(iris_server)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("iris") and c.is_model_ready("iris", "3")
    assert not c.is_model_ready("iris", "4") and not c.is_model_ready("nope")
    assert "binary_tensor_data" in c.get_server_metadata()["extensions"]
    meta = c.get_model_metadata("iris")
    assert meta["versions"] == ["3"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    # skl2onnx's ZipMap output is described (and served) as a plain FP32 [N, classes] tensor
    assert meta["outputs"] == [{"name": "output_label", "datatype": "INT64", "shape": [-1]},
                               {"name": "output_probability", "datatype": "FP32", "shape": [-1, 3]}]
    assert c.get_model_metadata("iris", "3") == meta


@pytest.mark.parametrize("binary", [False, True])
def test_infer_matches_onnxruntime(iris_server: Any, models: dict[str, Path], binary: bool) -> None:
    _, x, _, _, _ = split("iris")
    x = x[:7].astype(np.float32)
    c = client(iris_server)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("output_label", binary_data=binary),
               httpclient.InferRequestedOutput("output_probability", binary_data=binary)]
    result = c.infer("iris", [inp], outputs=outputs, request_id="r-1")
    labels, zipmap = run_onnx(models["iris_zipmap"], x)
    proba = np.array([[row[k] for k in sorted(row)] for row in zipmap], dtype=np.float32)
    assert result.as_numpy("output_label").tolist() == labels.tolist()
    np.testing.assert_allclose(result.as_numpy("output_probability"), proba, rtol=1e-6)
    assert result.get_response()["id"] == "r-1" and result.get_response()["model_version"] == "3"


def test_infer_without_requested_outputs_answers_all_in_binary(iris_server: Any, models: dict[str, Path]) -> None:
    x = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
    inp = httpclient.InferInput("input", [1, 4], "FP32")
    inp.set_data_from_numpy(x)
    result = client(iris_server).infer("iris", [inp], model_version="3")  # binary_data_output: true
    assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
    assert result.as_numpy("output_probability").shape == (1, 3)
    assert result.as_numpy("output_label").tolist() == run_onnx(models["iris_zipmap"], x)[0].tolist()


def test_wrong_input_through_tritonclient_is_a_400(iris_server: Any) -> None:
    inp = httpclient.InferInput("features", [1, 4], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
    with pytest.raises(InferenceServerException) as e:
        client(iris_server).infer("iris", [inp])
    assert e.value.status() == "400" and "unknown input 'features'" in e.value.message()


def test_regressor_and_plain_json(servers: Any, models: dict[str, Path]) -> None:
    s = servers([deployment("r", models["diabetes"], 1)], endpoint="diabetes", workers=1).start()
    _, x, _, _, _ = split("diabetes")
    x = x[:3].astype(np.float32)
    status, headers, body = post(s.url + "/v2/models/diabetes/infer",
                                 {"inputs": [{"name": "input", "datatype": "FP32", "shape": [3, 10],
                                              "data": x.tolist()}]})  # nested lists are fine
    assert status == 200 and headers["x-mlops-deployment"] == "r"
    import json
    out = json.loads(body)["outputs"][0]
    assert out["datatype"] == "FP32" and out["shape"] == [3, 1]
    np.testing.assert_allclose(np.array(out["data"]).reshape(3, 1), run_onnx(models["diabetes"], x)[0], rtol=1e-5)


def test_health_and_server_metadata(iris_server: Any) -> None:
    assert get(iris_server.url + "/v2/health/live")[0] == 200
    status, _, body = get(iris_server.url + "/v2")
    assert status == 200 and b'"name":"mlops"' in body
    status, _, body = post(iris_server.url + "/v2/models/iris/versions/3/infer", iris_request(2))
    assert status == 200
