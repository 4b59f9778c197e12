"""The in-repo models: valid ONNX, run in onnxruntime, follow their papers, deterministic.

Tolerances: outputs of the same model built at two opsets must be equal exactly (same weights,
same kernels); the numpy training forward pass must match onnxruntime within rtol 1e-4 /
atol 1e-4 (float32 reassociation over K = 1568).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, shape_inference

from mrvl.errors import MrvlError
from mrvl.models import (
    MODELS,
    build,
    count_parameters,
    example_inputs,
    load_digits_28,
    mnist_cnn,
    mnist_cnn_trained,
    mobilenet_v2,
    resnet50,
    ssd_detector,
)
from mrvl.models.ssd_detector import MAX_PER_CLASS, NUM_CLASSES, SCORE_THRESHOLD, prior_boxes
from mrvl.models import train_mnist
from mrvl.models.digits import digits_8x8, resize_bilinear
from mrvl.models.mnist_cnn import init_weights


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


@pytest.fixture(scope="module")
def built() -> dict[str, onnx.ModelProto]:
    """Every registered model, built once for the module (ResNet-50 takes about a second)."""
    return {name: builder() for name, builder in MODELS.items()}


@pytest.fixture(scope="module")
def outputs(built) -> dict[str, dict[str, np.ndarray]]:
    return {name: run_ort(model, example_inputs(model)) for name, model in built.items()}


EXPECTED_OUTPUTS = {
    "mnist_cnn": {"dense_1": (1, 10)},
    "resnet50": {"logits": (1, 1000)},
    "mobilenet_v2": {"logits": (1, 1000)},
    "ssd_detector": {"boxes": (None, 4), "scores": (None,), "labels": (None,),
                     "selected_indices": (None, 3)},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_is_valid_onnx(built, name):
    model = built[name]
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    (inp,) = model.graph.input
    assert inp.type.tensor_type.shape.dim[0].dim_param == "N"
    names = [node.name for node in model.graph.node]
    assert all(names) and len(set(names)) == len(names)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_runs_in_onnxruntime(outputs, name):
    got = outputs[name]
    assert list(got) == list(EXPECTED_OUTPUTS[name])
    for out, shape in EXPECTED_OUTPUTS[name].items():
        arr = got[out]
        assert len(arr.shape) == len(shape)
        assert all(e is None or e == d for e, d in zip(shape, arr.shape)), (out, arr.shape)
        assert np.all(np.isfinite(arr))


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2"])
def test_classifier_activations_stay_order_one(outputs, name):
    logits = outputs[name]["logits"]
    rms = float(np.sqrt(np.mean(logits.astype(np.float64) ** 2)))
    assert 0.1 < rms < 10.0
    assert np.std(logits) > 0.1  # not a constant output


def test_parameter_counts(built):
    # torchvision's counts (parameters, not BN running statistics).
    assert count_parameters(built["resnet50"]) == 25_557_032
    assert abs(count_parameters(built["resnet50"]) / 25.557e6 - 1) < 0.01
    assert count_parameters(built["mobilenet_v2"]) == 3_504_872
    assert abs(count_parameters(built["mobilenet_v2"]) / 3.5e6 - 1) < 0.01
    mnist = 64 * 4 + 64 + 32 * 64 * 4 + 32 + 1568 * 256 + 256 + 256 * 10 + 10
    assert count_parameters(built["mnist_cnn"]) == mnist


def test_resnet50_architecture(built):
    nodes = {node.name: node for node in built["resnet50"].graph.node}
    ops = [node.op_type for node in built["resnet50"].graph.node]
    assert ops.count("Conv") == 53 and ops.count("BatchNormalization") == 53
    assert ops.count("Add") == 16 and ops.count("Gemm") == 1
    # v1.5: the stride sits on the 3x3 conv of the first block of a stage.
    attrs = {a.name: helper.get_attribute_value(a) for a in nodes["layer2.0.conv2"].attribute}
    assert attrs["strides"] == [2, 2] and attrs["kernel_shape"] == [3, 3]
    attrs = {a.name: helper.get_attribute_value(a) for a in nodes["layer2.0.conv1"].attribute}
    assert attrs["strides"] == [1, 1]
    assert "layer4.0.downsample.0" in nodes and "layer4.1.downsample.0" not in nodes


def test_mobilenet_v2_architecture(built):
    graph = built["mobilenet_v2"].graph
    groups = [
        {a.name: helper.get_attribute_value(a) for a in n.attribute}["group"]
        for n in graph.node
        if n.op_type == "Conv"
    ]
    assert len(groups) == 52 and sum(g > 1 for g in groups) == 17
    assert sum(n.op_type == "Add" for n in graph.node) == 10
    clips = [n for n in graph.node if n.op_type == "Clip"]
    assert len(clips) == 35 and all(len(n.input) == 3 for n in clips)
    init = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    assert float(init[clips[0].input[1]]) == 0.0 and float(init[clips[0].input[2]]) == 6.0


def test_batch_norm_statistics_are_not_trivial(built):
    init = {i.name: onnx.numpy_helper.to_array(i) for i in built["resnet50"].graph.initializer}
    for suffix, trivial in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0),
                            ("running_var", 1.0)):  # fmt: skip
        values = init[f"layer1.0.bn1.{suffix}"]
        assert np.abs(values - trivial).max() > 0.05
        assert np.std(values) > 0.01


def test_mnist_cnn_shapes_follow_the_rfc():
    inferred = shape_inference.infer_shapes(mnist_cnn(batch=1), strict_mode=True)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in list(inferred.graph.value_info) + list(inferred.graph.output)
    }
    assert shapes["conv2d"] == [1, 64, 28, 28]
    assert shapes["max_pooling2d"] == [1, 64, 14, 14]
    assert shapes["conv2d_1"] == [1, 32, 14, 14]
    assert shapes["max_pooling2d_1"] == [1, 32, 7, 7]
    assert shapes["flatten/Transpose"] == [1, 7, 7, 32]
    assert shapes["flatten/Reshape"] == [1, 1568]
    assert shapes["dense/Relu"] == [1, 256]
    assert shapes["dense_1"] == [1, 10]
    conv = next(n for n in inferred.graph.node if n.name == "conv2d")
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    assert attrs["pads"] == [0, 0, 1, 1] and attrs["kernel_shape"] == [2, 2]
    assert [n.op_type for n in inferred.graph.node].count("Dropout") == 1


def test_builders_are_deterministic():
    assert mnist_cnn().SerializeToString() == mnist_cnn().SerializeToString()
    assert ssd_detector().SerializeToString() == ssd_detector().SerializeToString()
    assert mobilenet_v2(seed=1).SerializeToString() != mobilenet_v2().SerializeToString()


@pytest.mark.parametrize("builder", [mnist_cnn, mobilenet_v2, ssd_detector])
@pytest.mark.parametrize("opset", [11, 13])
def test_older_opsets_give_the_same_results(outputs, builder, opset):
    model = builder(opset=opset)
    onnx.checker.check_model(model, full_check=True)
    got = run_ort(model, example_inputs(model))
    for name, expected in outputs[builder.__name__].items():
        np.testing.assert_array_equal(got[name], expected)


def test_fixed_batch_runs_per_image():
    model = ssd_detector(batch=2)
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [
        2, 3, 160, 160]  # fmt: skip
    feeds = example_inputs(model, batch=2)
    got = run_ort(model, feeds)
    # NMS runs per image: image 1's detections equal those of the image alone.
    alone = run_ort(ssd_detector(), {"image": feeds["image"][1:]})
    mask = got["selected_indices"][:, 0] == 1
    assert mask.any() and (~mask).any()
    np.testing.assert_array_equal(got["boxes"][mask], alone["boxes"])
    np.testing.assert_array_equal(got["labels"][mask], alone["labels"])


def test_ssd_detections(built, outputs):
    det = outputs["ssd_detector"]
    k = len(det["scores"])
    assert 0 < k <= MAX_PER_CLASS * (NUM_CLASSES - 1)
    boxes = det["boxes"]
    assert np.all((boxes >= 0) & (boxes <= 1))
    assert np.all(boxes[:, 2:] >= boxes[:, :2])
    assert np.all(det["scores"] > SCORE_THRESHOLD)
    assert np.all((det["labels"] >= 1) & (det["labels"] < NUM_CLASSES))
    np.testing.assert_array_equal(det["labels"], det["selected_indices"][:, 1] + 1)
    assert len({tuple(r) for r in det["selected_indices"]}) == k
    ops = {n.op_type for n in built["ssd_detector"].graph.node}
    assert {"NonMaxSuppression", "Softmax", "Exp", "Split", "GatherND", "Concat"} <= ops


def test_ssd_prior_boxes():
    priors = prior_boxes([20, 10, 5, 3, 2, 1])
    assert priors.shape == (2424, 4)
    assert np.all((priors >= 0) & (priors <= 1))
    # First cell of the 20x20 map: centre (0.025, 0.025), the smallest square box 0.1.
    np.testing.assert_allclose(priors[0], [0.025, 0.025, 0.1, 0.1], rtol=1e-6)


def test_bad_arguments_raise_mrvl_error():
    with pytest.raises(MrvlError, match="opset 9"):
        resnet50(opset=9)
    with pytest.raises(MrvlError, match="batch"):
        mnist_cnn(batch=0)
    with pytest.raises(MrvlError, match="unknown model 'vgg'"):
        build("vgg")
    with pytest.raises(MrvlError, match="dense.kernel"):
        mnist_cnn(weights={**init_weights(), "dense.kernel": np.zeros((10, 10))})
    with pytest.raises(MrvlError, match="train_mnist"):
        mnist_cnn_trained("/nonexistent/mnist_cnn.onnx")


# ----------------------------------------------------------------------------- MNIST example


@pytest.fixture(scope="module")
def digits():
    return load_digits_28()


def test_digits_split(digits):
    x_train, y_train, x_test, y_test = digits
    assert x_train.shape == (1347, 1, 28, 28) and x_test.shape == (450, 1, 28, 28)
    assert x_train.dtype == np.float32 and y_test.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    counts = np.bincount(y_test, minlength=10) / np.bincount(np.concatenate([y_train, y_test]))
    np.testing.assert_allclose(counts, 0.25, atol=0.01)  # stratified
    np.testing.assert_array_equal(load_digits_28()[3], y_test)  # fixed split


def test_digits_file_reader_matches_sklearn():
    """The data file read without importing scikit-learn is `load_digits()` bit for bit."""
    from sklearn.datasets import load_digits

    images, target = digits_8x8()
    reference = load_digits()
    assert images.dtype == reference.images.dtype and target.dtype == np.int64
    np.testing.assert_array_equal(images, reference.images)
    np.testing.assert_array_equal(target, reference.target)


def test_resize_matches_onnx_resize():
    images = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    node = helper.make_node(
        "Resize", ["x", "", "", "sizes"], ["y"], mode="linear",
        coordinate_transformation_mode="half_pixel",
    )  # fmt: skip
    graph = helper.make_graph(
        [node], "resize",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 1, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 1, 28, 28])],
        [onnx.numpy_helper.from_array(np.array([2, 1, 28, 28], np.int64), "sizes")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    expected = run_ort(model, {"x": images[:, None]})["y"][:, 0]
    np.testing.assert_allclose(resize_bilinear(images, 28), expected, rtol=1e-5, atol=1e-6)


def test_trained_mnist_accuracy_in_onnxruntime(digits):
    _, _, x_test, y_test = digits
    model = mnist_cnn_trained()
    onnx.checker.check_model(model, full_check=True)
    logits = run_ort(model, {"permute_input": x_test})["dense_1"]
    accuracy = float((logits.argmax(axis=1) == y_test).mean())
    assert accuracy >= 0.95


def test_numpy_training_forward_matches_onnxruntime(digits):
    """The trainer's NHWC numpy forward pass is the ONNX model's semantics."""
    model = mnist_cnn_trained()
    params = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    x = digits[2][:64]
    expected = run_ort(model, {"permute_input": x})["dense_1"]
    got, _ = train_mnist.forward(params, x, None)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_training_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    params = {k: v.astype(np.float64) for k, v in init_weights(1).items()}
    x = rng.random((2, 1, 28, 28))
    y = np.array([3, 8])

    def loss(p):
        return train_mnist.softmax_cross_entropy(train_mnist.forward(p, x, None)[0], y)[0]

    logits, cache = train_mnist.forward(params, x, None)
    _, dlogits = train_mnist.softmax_cross_entropy(logits, y)
    grads = train_mnist.backward(params, cache, dlogits)
    eps = 1e-6
    for name in params:
        grad = grads[name].ravel()
        for flat in np.argsort(-np.abs(grad))[:2]:  # the largest entries: never zero
            idx = np.unravel_index(flat, params[name].shape)
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            numeric = (loss(plus) - loss(minus)) / (2 * eps)
            assert numeric == pytest.approx(grads[name][idx], rel=1e-4, abs=1e-8), (name, idx)
