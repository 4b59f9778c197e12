// RUN: mrvl-opt %s -p convert-graph-to-mrvl --split-input-file | filecheck %s

// Squeeze-excite: conv1x1 + sigmoid fuses, the broadcast mul [N,H,W,C] * [N,1,1,C] becomes
// mrvl.mul; SiLU m * sigmoid(m) of its result is the mul's fused activation "silu".

func.func @se_silu(%x: tensor<1x4x4x8xf32>, %p: tensor<1x1x1x8xf32>) -> tensor<1x4x4x8xf32> {
  %w = graph.constant dense<5.000000e-01> : tensor<8x1x1x8xf32>
  %f = graph.conv2d %p, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NHWC", kernel_layout = "OHWI", onnx_node = "fc2"} : (tensor<1x1x1x8xf32>, tensor<8x1x1x8xf32>) -> tensor<1x1x1x8xf32>
  %s = graph.sigmoid %f {onnx_node = "gate"} : (tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32>
  %m = graph.mul %x, %s {onnx_node = "se_mul"} : (tensor<1x4x4x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x4x4x8xf32>
  %g = graph.sigmoid %m {onnx_node = "sig"} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  %y = graph.mul %m, %g {onnx_node = "silu"} : (tensor<1x4x4x8xf32>, tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  func.return %y : tensor<1x4x4x8xf32>
}

// CHECK-LABEL: func.func @se_silu
// CHECK-SAME:  (%[[X:.+]]: tensor<1x4x4x8xf32>, %[[P:.+]]: tensor<1x1x1x8xf32>)
// CHECK:       %[[F:.+]] = mrvl.conv2d %[[P]], %{{.+}} {onnx_nodes = ["fc2", "gate"], layer_name = "tvmgen_mrvl_main_0", {{.*}}activation = "sigmoid"}
// CHECK-NEXT:  %[[Y:.+]] = mrvl.mul %[[X]], %[[F]] {onnx_nodes = ["se_mul", "sig", "silu"], layer_name = "tvmgen_mrvl_main_1", activation = "silu"} : (tensor<1x4x4x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x4x4x8xf32>
// CHECK-NEXT:  func.return %[[Y]]

// -----

// A division by a constant is a mul by its reciprocal (a fused relu6 follows); hard_swish is
// x * clip(x / 6 + 1 / 2, 0, 1): mul by 1/6, sum with 1/2 clipped to [0, 1], mul with x;
// a standalone hard_sigmoid keeps its alpha and beta; leaky_relu, tanh, clip are standalone
// activation layers.

func.func @const_ops(%x: tensor<1x4x4x8xf32>) -> (tensor<1x4x4x8xf32>, tensor<1x4x4x8xf32>) {
  %six = graph.constant dense<4.000000e+00> : tensor<f32>
  %d = graph.div %x, %six {onnx_node = "div"} : (tensor<1x4x4x8xf32>, tensor<f32>) -> tensor<1x4x4x8xf32>
  %d6 = graph.clip %d {min = 0.000000e+00 : f32, max = 6.000000e+00 : f32} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  %h = graph.hard_swish %d6 {onnx_node = "hswish"} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  %l = graph.leaky_relu %h {alpha = 0.1 : f32, onnx_node = "leaky"} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  %t = graph.tanh %l {onnx_node = "tanh"} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  %c = graph.clip %t {min = -5.000000e-01 : f32, max = 5.000000e-01 : f32} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  %hs = graph.hard_sigmoid %x {alpha = 2.500000e-01 : f32, beta = 2.500000e-01 : f32} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  func.return %c, %hs : tensor<1x4x4x8xf32>, tensor<1x4x4x8xf32>
}

// CHECK-LABEL: func.func @const_ops
// CHECK-SAME:  (%[[X:.+]]: tensor<1x4x4x8xf32>)
// CHECK:       %[[R:.+]] = graph.constant dense<2.500000e-01> : tensor<1xf32>
// CHECK-NEXT:  %[[D:.+]] = mrvl.mul %[[X]], %[[R]] {onnx_nodes = ["div"], layer_name = "tvmgen_mrvl_main_0", activation = "clip", clip_min = 0.000000e+00 : f32, clip_max = 6.000000e+00 : f32}
// CHECK-NEXT:  %[[A:.+]] = graph.constant dense<0.166666672> : tensor<1xf32>
// CHECK-NEXT:  %[[H1:.+]] = mrvl.mul %[[D]], %[[A]] {onnx_nodes = ["hswish"], layer_name = "tvmgen_mrvl_main_1", activation = "none"}
// CHECK-NEXT:  %[[B:.+]] = graph.constant dense<5.000000e-01> : tensor<1xf32>
// CHECK-NEXT:  %[[H2:.+]] = mrvl.sum %[[H1]], %[[B]] {onnx_nodes = ["hswish"], layer_name = "tvmgen_mrvl_main_2", activation = "clip", clip_min = 0.000000e+00 : f32, clip_max = 1.000000e+00 : f32}
// CHECK-NEXT:  %[[H:.+]] = mrvl.mul %[[D]], %[[H2]] {onnx_nodes = ["hswish"], layer_name = "tvmgen_mrvl_main_3", activation = "none"}
// CHECK-NEXT:  %[[L:.+]] = mrvl.activation %[[H]] {onnx_nodes = ["leaky"], layer_name = "tvmgen_mrvl_main_4", activation = "leaky_relu", alpha = 1.000000e-01 : f32}
// CHECK-NEXT:  %[[T:.+]] = mrvl.activation %[[L]] {onnx_nodes = ["tanh"], layer_name = "tvmgen_mrvl_main_5", activation = "tanh"}
// CHECK-NEXT:  %[[C:.+]] = mrvl.activation %[[T]] {layer_name = "tvmgen_mrvl_main_6", activation = "clip", clip_min = -5.000000e-01 : f32, clip_max = 5.000000e-01 : f32}
// CHECK-NEXT:  %[[HA:.+]] = graph.constant dense<2.500000e-01> : tensor<1xf32>
// CHECK-NEXT:  %[[HS1:.+]] = mrvl.mul %[[X]], %[[HA]] {layer_name = "tvmgen_mrvl_main_7", activation = "none"}
// CHECK-NEXT:  %[[HB:.+]] = graph.constant dense<2.500000e-01> : tensor<1xf32>
// CHECK-NEXT:  %[[HS:.+]] = mrvl.sum %[[HS1]], %[[HB]] {layer_name = "tvmgen_mrvl_main_8", activation = "clip", clip_min = 0.000000e+00 : f32, clip_max = 1.000000e+00 : f32}
// CHECK-NEXT:  func.return %[[C]], %[[HS]]

// -----

// A division by a tensor is mrvl.div (ELTWISE DIV), broadcasting like mrvl.mul, with the
// relu after it fused; a constant numerator is the layer's constant operand.

func.func @div_tensor(%x: tensor<1x4x4x8xf32>, %d: tensor<1x4x4x1xf32>) -> (tensor<1x4x4x8xf32>, tensor<1x4x4x1xf32>) {
  %q = graph.div %x, %d {onnx_node = "div"} : (tensor<1x4x4x8xf32>, tensor<1x4x4x1xf32>) -> tensor<1x4x4x8xf32>
  %r = graph.relu %q {onnx_node = "relu"} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  %two = graph.constant dense<2.000000e+00> : tensor<1xf32>
  %inv = graph.div %two, %d {onnx_node = "inv"} : (tensor<1xf32>, tensor<1x4x4x1xf32>) -> tensor<1x4x4x1xf32>
  func.return %r, %inv : tensor<1x4x4x8xf32>, tensor<1x4x4x1xf32>
}

// CHECK-LABEL: func.func @div_tensor
// CHECK-SAME:  (%[[X:.+]]: tensor<1x4x4x8xf32>, %[[D:.+]]: tensor<1x4x4x1xf32>)
// CHECK:       %[[Q:.+]] = mrvl.div %[[X]], %[[D]] {onnx_nodes = ["div", "relu"], layer_name = "tvmgen_mrvl_main_0", activation = "relu"} : (tensor<1x4x4x8xf32>, tensor<1x4x4x1xf32>) -> tensor<1x4x4x8xf32>
// CHECK-NEXT:  %[[TWO:.+]] = graph.constant dense<2.000000e+00> : tensor<1xf32>
// CHECK-NEXT:  %[[INV:.+]] = mrvl.div %[[TWO]], %[[D]] {onnx_nodes = ["inv"], layer_name = "tvmgen_mrvl_main_1", activation = "none"}
// CHECK-NEXT:  func.return %[[Q]], %[[INV]]

// -----

// Not lowered: a mul of rank-5 tensors, a division of rank-5 tensors or by a constant with a
// zero, activations of a rank-5 tensor or of f16 data, a mul of two constants, a clip whose
// min exceeds its max (ONNX gives max everywhere, the ISA's CLIP would give min).

func.func @not_lowered(%a: tensor<2x3x4x1x1xf32>, %b: tensor<1x4x4x8xf32>, %c: tensor<1x4x4x8xf32>, %v: tensor<1x2x2x2x2xf32>, %h: tensor<1x4xf16>) -> (tensor<2x3x4x1x1xf32>, tensor<2x3x4x1x1xf32>, tensor<1x4x4x8xf32>, tensor<1x2x2x2x2xf32>, tensor<1x4xf16>, tensor<2xf32>, tensor<1x4x4x8xf32>) {
  %m = graph.mul %a, %a : (tensor<2x3x4x1x1xf32>, tensor<2x3x4x1x1xf32>) -> tensor<2x3x4x1x1xf32>
  %d = graph.div %a, %a : (tensor<2x3x4x1x1xf32>, tensor<2x3x4x1x1xf32>) -> tensor<2x3x4x1x1xf32>
  %z = graph.constant dense<[0.000000e+00, 1.000000e+00, 2.000000e+00, 3.000000e+00, 4.000000e+00, 5.000000e+00, 6.000000e+00, 7.000000e+00]> : tensor<8xf32>
  %dz = graph.div %b, %z : (tensor<1x4x4x8xf32>, tensor<8xf32>) -> tensor<1x4x4x8xf32>
  %t = graph.tanh %v : (tensor<1x2x2x2x2xf32>) -> tensor<1x2x2x2x2xf32>
  %s = graph.sigmoid %h : (tensor<1x4xf16>) -> tensor<1x4xf16>
  %k = graph.constant dense<2.000000e+00> : tensor<2xf32>
  %kk = graph.mul %k, %k : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>
  %cl = graph.clip %c {min = 1.000000e+00 : f32, max = 0.000000e+00 : f32} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  func.return %m, %d, %dz, %t, %s, %kk, %cl : tensor<2x3x4x1x1xf32>, tensor<2x3x4x1x1xf32>, tensor<1x4x4x8xf32>, tensor<1x2x2x2x2xf32>, tensor<1x4xf16>, tensor<2xf32>, tensor<1x4x4x8xf32>
}

// CHECK-LABEL: func.func @not_lowered
// CHECK-NOT:   = mrvl.
// CHECK:       graph.mul {{.*}}mrvl.cpu_reason = "mul of rank 5 tensors is not supported"
// CHECK:       graph.div {{.*}}mrvl.cpu_reason = "div of rank 5 tensors is not supported"
// CHECK:       graph.div {{.*}}mrvl.cpu_reason = "divisor has zeros or values without a finite reciprocal"
// CHECK:       graph.tanh {{.*}}mrvl.cpu_reason = "graph.tanh of a rank 5 tensor is not supported"
// CHECK:       graph.sigmoid {{.*}}mrvl.cpu_reason = "dtype f16 not supported"
// CHECK:       graph.mul {{.*}}mrvl.cpu_reason = "both operands are constants (fold constants first)"
// CHECK:       graph.clip {{.*}}mrvl.cpu_reason = "clip min 1 > max 0 (the ISA clip needs min <= max)"
// CHECK-NOT:   = mrvl.
// CHECK:       func.return
