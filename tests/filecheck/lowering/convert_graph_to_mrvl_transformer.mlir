// RUN: mrvl-opt %s -p convert-graph-to-mrvl --split-input-file | filecheck %s

// Transformer patterns: batched MatMuls of activations read Q / K / V through their head
// transposes (a_perm / b_perm, no transpose layers); the scale and the Softmax of the
// scores are the score MatMul's epilogue (softmax_scale); ONNX
// LayerNormalization; a Linear on [B, S, D] (MatMul + Add) is an FC over the rows between
// two reshapes, with the erf-form GELU fused into it; not lowered: a softmax over another
// axis, a matmul with different batch dims, a lone Erf.

func.func @attention(%q: tensor<1x4x2x8xf32>, %k: tensor<1x4x2x8xf32>, %v: tensor<1x4x2x8xf32>) -> tensor<1x2x4x8xf32> {
  %qt = graph.transpose %q {perm = array<i64: 0, 2, 1, 3>, onnx_node = "q_t"} : (tensor<1x4x2x8xf32>) -> tensor<1x2x4x8xf32>
  %kt = graph.transpose %k {perm = array<i64: 0, 2, 3, 1>, onnx_node = "k_t"} : (tensor<1x4x2x8xf32>) -> tensor<1x2x8x4xf32>
  %vt = graph.transpose %v {perm = array<i64: 0, 2, 1, 3>, onnx_node = "v_t"} : (tensor<1x4x2x8xf32>) -> tensor<1x2x4x8xf32>
  %s = graph.matmul %qt, %kt {onnx_node = "scores"} : (tensor<1x2x4x8xf32>, tensor<1x2x8x4xf32>) -> tensor<1x2x4x4xf32>
  %quarter = graph.constant dense<2.500000e-01> : tensor<f32>
  %m = graph.mul %s, %quarter {onnx_node = "scale"} : (tensor<1x2x4x4xf32>, tensor<f32>) -> tensor<1x2x4x4xf32>
  %p = graph.softmax %m {axis = 3 : i64, onnx_node = "softmax"} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %c = graph.matmul %p, %vt {onnx_node = "context"} : (tensor<1x2x4x4xf32>, tensor<1x2x4x8xf32>) -> tensor<1x2x4x8xf32>
  func.return %c : tensor<1x2x4x8xf32>
}

// CHECK-LABEL: func.func @attention
// CHECK-SAME:  (%[[Q:.+]]: tensor<1x4x2x8xf32>, %[[K:.+]]: tensor<1x4x2x8xf32>, %[[V:.+]]: tensor<1x4x2x8xf32>)
// CHECK-NEXT:  %[[P:.+]] = mrvl.matmul %[[Q]], %[[K]] {onnx_nodes = ["scores", "scale", "softmax"], layer_name = "tvmgen_mrvl_main_0", a_perm = array<i64: 0, 2, 1, 3>, b_perm = array<i64: 0, 2, 3, 1>, softmax_scale = 2.500000e-01 : f32}
// CHECK-NEXT:  %[[C:.+]] = mrvl.matmul %[[P]], %[[V]] {onnx_nodes = ["context"], layer_name = "tvmgen_mrvl_main_1", b_perm = array<i64: 0, 2, 1, 3>}
// CHECK-NEXT:  func.return %[[C]]

// -----

func.func @linear_gelu_ln(%x: tensor<1x4x8xf32>) -> tensor<1x4x16xf32> {
  %g = graph.constant dense<1.000000e+00> : tensor<8xf32>
  %b = graph.constant dense<0.000000e+00> : tensor<8xf32>
  %ln = graph.onnx %x, %g, %b {op_type = "LayerNormalization", domain = "", opset = 17 : i64, attrs = {axis = -1 : i64, epsilon = 1.000000e-05 : f32}, onnx_node = "ln"} : (tensor<1x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %w = graph.constant dense<2.500000e-01> : tensor<8x16xf32>
  %bias = graph.constant dense<1.000000e-01> : tensor<16xf32>
  %mm = graph.matmul %ln, %w {onnx_node = "fc/MatMul"} : (tensor<1x4x8xf32>, tensor<8x16xf32>) -> tensor<1x4x16xf32>
  %y = graph.add %mm, %bias {onnx_node = "fc/Add"} : (tensor<1x4x16xf32>, tensor<16xf32>) -> tensor<1x4x16xf32>
  %sq = graph.constant dense<1.41421354> : tensor<f32>
  %d = graph.div %y, %sq {onnx_node = "gelu/Div"} : (tensor<1x4x16xf32>, tensor<f32>) -> tensor<1x4x16xf32>
  %e = graph.onnx %d {op_type = "Erf", domain = "", opset = 17 : i64, attrs = {}, onnx_node = "gelu/Erf"} : (tensor<1x4x16xf32>) -> tensor<1x4x16xf32>
  %one = graph.constant dense<1.000000e+00> : tensor<f32>
  %a = graph.add %e, %one {onnx_node = "gelu/Add"} : (tensor<1x4x16xf32>, tensor<f32>) -> tensor<1x4x16xf32>
  %m = graph.mul %y, %a {onnx_node = "gelu/Mul"} : (tensor<1x4x16xf32>, tensor<1x4x16xf32>) -> tensor<1x4x16xf32>
  %half = graph.constant dense<5.000000e-01> : tensor<f32>
  %r = graph.mul %m, %half {onnx_node = "gelu/Mul_1"} : (tensor<1x4x16xf32>, tensor<f32>) -> tensor<1x4x16xf32>
  func.return %r : tensor<1x4x16xf32>
}

// CHECK-LABEL: func.func @linear_gelu_ln
// CHECK-SAME:  (%[[X:.+]]: tensor<1x4x8xf32>)
// CHECK:       %[[LN:.+]] = mrvl.layernorm %[[X]], %{{.+}}, %{{.+}} {onnx_nodes = ["ln"], layer_name = "tvmgen_mrvl_main_0", epsilon = 1.000000e-05 : f32}
// CHECK:       %[[R:.+]] = mrvl.reshape %[[LN]] {layer_name = "tvmgen_mrvl_main_1"} : (tensor<1x4x8xf32>) -> tensor<4x8xf32>
// CHECK-NEXT:  %[[FC:.+]] = mrvl.fc %[[R]], %{{.+}}, %{{.+}} {onnx_nodes = ["fc/MatMul", "fc/Add", "gelu/Div", "gelu/Erf", "gelu/Add", "gelu/Mul", "gelu/Mul_1"], layer_name = "tvmgen_mrvl_main_2", activation = "gelu"} : (tensor<4x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<4x16xf32>
// CHECK-NEXT:  %[[Y:.+]] = mrvl.reshape %[[FC]] {{.*}}layer_name = "tvmgen_mrvl_main_3"} : (tensor<4x16xf32>) -> tensor<1x4x16xf32>
// CHECK-NOT:   graph.onnx
// CHECK:       func.return %[[Y]]

// -----

func.func @not_lowered(%x: tensor<1x4x8xf32>, %y: tensor<2x8x3xf32>) -> (tensor<1x4x8xf32>, tensor<2x4x3xf32>, tensor<1x4x8xf32>) {
  %s = graph.softmax %x {axis = 1 : i64, onnx_node = "sm"} : (tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  %m = graph.matmul %x, %y {onnx_node = "mm"} : (tensor<1x4x8xf32>, tensor<2x8x3xf32>) -> tensor<2x4x3xf32>
  %e = graph.onnx %x {op_type = "Erf", domain = "", opset = 17 : i64, attrs = {}, onnx_node = "erf"} : (tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  func.return %s, %m, %e : tensor<1x4x8xf32>, tensor<2x4x3xf32>, tensor<1x4x8xf32>
}

// CHECK-LABEL: func.func @not_lowered
// CHECK-NOT:   = mrvl.
// CHECK:       graph.softmax {{.*}}mrvl.cpu_reason = "softmax axis 1 is not the last axis"
// CHECK:       graph.matmul {{.*}}mrvl.cpu_reason = "matmul batch dims [1] and [2] differ"
// CHECK:       graph.onnx {{.*}}mrvl.cpu_reason = "graph.onnx Erf: only inside a GELU or LayerNorm pattern"
// CHECK-NOT:   = mrvl.
// CHECK:       func.return
