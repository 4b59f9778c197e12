// RUN: mrvl-opt %s | filecheck %s
// RUN: mrvl-opt %s | mrvl-opt > %t.1 && mrvl-opt %s > %t.2 && diff %t.1 %t.2
// RUN: mrvl-opt --elide-constants=4 %s | filecheck %s --check-prefix=ELIDE

// Round trip of every graph op: parse, print, re-parse, re-print identically.

func.func @constants() -> (tensor<2x3xf32>, tensor<3xi64>, tensor<2xi1>, tensor<4xf16>, tensor<2xui8>, tensor<2xi8>, tensor<20xi32>, tensor<0xf32>) {
  %0 = graph.constant {onnx_node = "w"} dense<"0x0000803F000000400000C07F0000807F000080FF00000000"> : tensor<2x3xf32>
  %1 = graph.constant dense<[1, -1, 64]> : tensor<3xi64>
  %2 = graph.constant dense<[true, false]> : tensor<2xi1>
  %3 = graph.constant dense<[1.000000e+00, 2.500000e+00, -5.000000e-01, 0.000000e+00]> : tensor<4xf16>
  %4 = graph.constant dense<[255, 7]> : tensor<2xui8>
  %5 = graph.constant dense<[-128, 7]> : tensor<2xi8>
  %6 = graph.constant dense<"0x01000000"> : tensor<20xi32>
  %7 = graph.constant dense<> : tensor<0xf32>
  func.return %0, %1, %2, %3, %4, %5, %6, %7 : tensor<2x3xf32>, tensor<3xi64>, tensor<2xi1>, tensor<4xf16>, tensor<2xui8>, tensor<2xi8>, tensor<20xi32>, tensor<0xf32>
}
// CHECK-LABEL: func.func @constants
// CHECK-NEXT:    %{{.*}} = graph.constant {onnx_node = "w"} dense<"0x0000803F000000400000C07F0000807F000080FF00000000"> : tensor<2x3xf32>
// CHECK-NEXT:    %{{.*}} = graph.constant dense<[1, -1, 64]> : tensor<3xi64>
// CHECK-NEXT:    %{{.*}} = graph.constant dense<"0x0100"> : tensor<2xi1>
// CHECK-NEXT:    %{{.*}} = graph.constant dense<[1.000000e+00, 2.500000e+00, -5.000000e-01, 0.000000e+00]> : tensor<4xf16>
// CHECK-NEXT:    %{{.*}} = graph.constant dense<[255, 7]> : tensor<2xui8>
// CHECK-NEXT:    %{{.*}} = graph.constant dense<[-128, 7]> : tensor<2xi8>
// CHECK-NEXT:    %{{.*}} = graph.constant dense<"0x01000000"> : tensor<20xi32>
// CHECK-NEXT:    %{{.*}} = graph.constant dense<> : tensor<0xf32>
// ELIDE-LABEL: func.func @constants
// ELIDE-NEXT:    graph.constant {onnx_node = "w"} dense_resource<__elided__> : tensor<2x3xf32>
// ELIDE-NEXT:    graph.constant dense<[1, -1, 64]> : tensor<3xi64>
// ELIDE:         graph.constant dense_resource<__elided__> : tensor<20xi32>

func.func @compute(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>, %b: tensor<4xf32>, %wt: tensor<4x3x3x3xf32>, %a: tensor<2x4xf32>, %bm: tensor<3x4xf32>, %c: tensor<3xf32>, %m3: tensor<2x3x4xf32>, %m2: tensor<4x5xf32>) {
  %0 = graph.conv2d %x, %w, %b {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCHW", kernel_layout = "OIHW", onnx_node = "conv1"} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>) -> tensor<1x4x8x8xf32>
  %1 = graph.conv2d %x, %w {strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCHW", kernel_layout = "OIHW"} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x4x4xf32>
  %2 = graph.gemm %a, %bm, %c {alpha = 1.0 : f32, beta = 0.5 : f32, trans_a = 0 : i64, trans_b = 1 : i64} : (tensor<2x4xf32>, tensor<3x4xf32>, tensor<3xf32>) -> tensor<2x3xf32>
  %3 = graph.matmul %m3, %m2 : (tensor<2x3x4xf32>, tensor<4x5xf32>) -> tensor<2x3x5xf32>
  %4 = graph.dense %a, %bm : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32>
  %5 = graph.bias_add %4, %c {axis = 1 : i64} : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
  func.return
}
// CHECK-LABEL: func.func @compute
// CHECK:         %{{.*}} = graph.conv2d %{{.*}}, %{{.*}}, %{{.*}} {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCHW", kernel_layout = "OIHW", onnx_node = "conv1"} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:    %{{.*}} = graph.conv2d %{{.*}}, %{{.*}} {strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCHW", kernel_layout = "OIHW"} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x4x4xf32>
// CHECK-NEXT:    %{{.*}} = graph.gemm %{{.*}}, %{{.*}}, %{{.*}} {alpha = 1.000000e+00 : f32, beta = 5.000000e-01 : f32, trans_a = 0 : i64, trans_b = 1 : i64} : (tensor<2x4xf32>, tensor<3x4xf32>, tensor<3xf32>) -> tensor<2x3xf32>
// CHECK-NEXT:    %{{.*}} = graph.matmul %{{.*}}, %{{.*}} : (tensor<2x3x4xf32>, tensor<4x5xf32>) -> tensor<2x3x5xf32>
// CHECK-NEXT:    %{{.*}} = graph.dense %{{.*}}, %{{.*}} : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32>
// CHECK-NEXT:    %{{.*}} = graph.bias_add %{{.*}}, %{{.*}} {axis = 1 : i64} : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>

func.func @elementwise(%x: tensor<1x4x2x2xf32>, %y: tensor<4x1x1xf32>) {
  %0 = graph.add %x, %y : (tensor<1x4x2x2xf32>, tensor<4x1x1xf32>) -> tensor<1x4x2x2xf32>
  %1 = graph.sub %x, %y : (tensor<1x4x2x2xf32>, tensor<4x1x1xf32>) -> tensor<1x4x2x2xf32>
  %2 = graph.mul %y, %x : (tensor<4x1x1xf32>, tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
  %3 = graph.div %x, %y : (tensor<1x4x2x2xf32>, tensor<4x1x1xf32>) -> tensor<1x4x2x2xf32>
  %4 = graph.relu %x : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
  %5 = graph.leaky_relu %x {alpha = 0.1 : f32} : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
  %6 = graph.prelu %x, %y : (tensor<1x4x2x2xf32>, tensor<4x1x1xf32>) -> tensor<1x4x2x2xf32>
  %7 = graph.clip %x {min = 0.0 : f32, max = 6.0 : f32} : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
  %8 = graph.clip %x {max = 6.0 : f32} : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
  %9 = graph.sigmoid %x : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
  %10 = graph.hard_sigmoid %x {alpha = 0.2 : f32, beta = 0.5 : f32} : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
  %11 = graph.hard_swish %x : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
  %12 = graph.tanh %x : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
  %13 = graph.softmax %x {axis = 1 : i64} : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
  %14 = graph.identity %x : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
  %15 = graph.dropout %x {ratio = 0.5 : f32} : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
  func.return
}
// CHECK-LABEL: func.func @elementwise
// CHECK:         graph.add %{{.*}}, %{{.*}} : (tensor<1x4x2x2xf32>, tensor<4x1x1xf32>) -> tensor<1x4x2x2xf32>
// CHECK-NEXT:    graph.sub
// CHECK-NEXT:    graph.mul %{{.*}}, %{{.*}} : (tensor<4x1x1xf32>, tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
// CHECK-NEXT:    graph.div
// CHECK-NEXT:    graph.relu %{{.*}} : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
// CHECK-NEXT:    graph.leaky_relu %{{.*}} {alpha = 1.000000e-01 : f32}
// CHECK-NEXT:    graph.prelu
// CHECK-NEXT:    graph.clip %{{.*}} {min = 0.000000e+00 : f32, max = 6.000000e+00 : f32}
// CHECK-NEXT:    graph.clip %{{.*}} {max = 6.000000e+00 : f32}
// CHECK-NEXT:    graph.sigmoid
// CHECK-NEXT:    graph.hard_sigmoid %{{.*}} {alpha = 2.000000e-01 : f32, beta = 5.000000e-01 : f32}
// CHECK-NEXT:    graph.hard_swish
// CHECK-NEXT:    graph.tanh
// CHECK-NEXT:    graph.softmax %{{.*}} {axis = 1 : i64}
// CHECK-NEXT:    graph.identity
// CHECK-NEXT:    graph.dropout %{{.*}} {ratio = 5.000000e-01 : f32}

func.func @pools(%x: tensor<1x4x5x5xf32>, %n: tensor<1x5x5x4xf32>, %s: tensor<4xf32>) {
  %0 = graph.max_pool2d %x {kernel_shape = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, ceil_mode = 1 : i64, layout = "NCHW"} : (tensor<1x4x5x5xf32>) -> tensor<1x4x3x3xf32>
  %1 = graph.avg_pool2d %n {kernel_shape = array<i64: 3, 3>, strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, ceil_mode = 0 : i64, count_include_pad = 1 : i64, layout = "NHWC"} : (tensor<1x5x5x4xf32>) -> tensor<1x5x5x4xf32>
  %2 = graph.global_avg_pool2d %x {layout = "NCHW"} : (tensor<1x4x5x5xf32>) -> tensor<1x4x1x1xf32>
  %3 = graph.global_max_pool2d %n {layout = "NHWC"} : (tensor<1x5x5x4xf32>) -> tensor<1x1x1x4xf32>
  %4 = graph.batch_norm %x, %s, %s, %s, %s {epsilon = 1.0e-05 : f32, layout = "NCHW"} : (tensor<1x4x5x5xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<1x4x5x5xf32>
  func.return
}
// CHECK-LABEL: func.func @pools
// CHECK:         graph.max_pool2d %{{.*}} {kernel_shape = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, ceil_mode = 1 : i64, layout = "NCHW"} : (tensor<1x4x5x5xf32>) -> tensor<1x4x3x3xf32>
// CHECK-NEXT:    graph.avg_pool2d %{{.*}} {kernel_shape = array<i64: 3, 3>, strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, ceil_mode = 0 : i64, count_include_pad = 1 : i64, layout = "NHWC"} : (tensor<1x5x5x4xf32>) -> tensor<1x5x5x4xf32>
// CHECK-NEXT:    graph.global_avg_pool2d %{{.*}} {layout = "NCHW"} : (tensor<1x4x5x5xf32>) -> tensor<1x4x1x1xf32>
// CHECK-NEXT:    graph.global_max_pool2d %{{.*}} {layout = "NHWC"} : (tensor<1x5x5x4xf32>) -> tensor<1x1x1x4xf32>
// CHECK-NEXT:    graph.batch_norm %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {epsilon = 1.000000e-05 : f32, layout = "NCHW"}

func.func @movement(%x: tensor<1x4x2x2xf32>, %y: tensor<1x2x2x2xf32>, %v: tensor<4xf32>) {
  %0 = graph.pad %x {pads = array<i64: 0, 0, 1, 1, 0, 0, 1, 1>, mode = "reflect", value = 0.0 : f32} : (tensor<1x4x2x2xf32>) -> tensor<1x4x4x4xf32>
  %1 = graph.concat %x, %y {axis = 1 : i64} : (tensor<1x4x2x2xf32>, tensor<1x2x2x2xf32>) -> tensor<1x6x2x2xf32>
  %2, %3 = graph.split %x {axis = 1 : i64, split = array<i64: 1, 3>} : (tensor<1x4x2x2xf32>) -> (tensor<1x1x2x2xf32>, tensor<1x3x2x2xf32>)
  %4 = graph.reshape %x : (tensor<1x4x2x2xf32>) -> tensor<1x16xf32>
  %5 = graph.flatten %x {axis = 2 : i64} : (tensor<1x4x2x2xf32>) -> tensor<4x4xf32>
  %6 = graph.squeeze %2 {axes = array<i64: 0, 1>} : (tensor<1x1x2x2xf32>) -> tensor<2x2xf32>
  %7 = graph.unsqueeze %v {axes = array<i64: 0, 2>} : (tensor<4xf32>) -> tensor<1x4x1xf32>
  %8 = graph.transpose %x {perm = array<i64: 0, 2, 3, 1>} : (tensor<1x4x2x2xf32>) -> tensor<1x2x2x4xf32>
  %9 = graph.layout_transform %y {src_layout = "NCHW", dst_layout = "NHWC"} : (tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %10 = graph.resize %x {mode = "nearest", coordinate_transformation_mode = "asymmetric", nearest_mode = "floor", scales = array<f32: 1.0, 1.0, 2.0, 2.0>} : (tensor<1x4x2x2xf32>) -> tensor<1x4x4x4xf32>
  func.return
}
// CHECK-LABEL: func.func @movement
// CHECK:         graph.pad %{{.*}} {pads = array<i64: 0, 0, 1, 1, 0, 0, 1, 1>, mode = "reflect", value = 0.000000e+00 : f32} : (tensor<1x4x2x2xf32>) -> tensor<1x4x4x4xf32>
// CHECK-NEXT:    graph.concat %{{.*}}, %{{.*}} {axis = 1 : i64} : (tensor<1x4x2x2xf32>, tensor<1x2x2x2xf32>) -> tensor<1x6x2x2xf32>
// CHECK-NEXT:    %{{.*}}, %{{.*}} = graph.split %{{.*}} {axis = 1 : i64, split = array<i64: 1, 3>} : (tensor<1x4x2x2xf32>) -> (tensor<1x1x2x2xf32>, tensor<1x3x2x2xf32>)
// CHECK-NEXT:    graph.reshape %{{.*}} : (tensor<1x4x2x2xf32>) -> tensor<1x16xf32>
// CHECK-NEXT:    graph.flatten %{{.*}} {axis = 2 : i64} : (tensor<1x4x2x2xf32>) -> tensor<4x4xf32>
// CHECK-NEXT:    graph.squeeze %{{.*}} {axes = array<i64: 0, 1>} : (tensor<1x1x2x2xf32>) -> tensor<2x2xf32>
// CHECK-NEXT:    graph.unsqueeze %{{.*}} {axes = array<i64: 0, 2>} : (tensor<4xf32>) -> tensor<1x4x1xf32>
// CHECK-NEXT:    graph.transpose %{{.*}} {perm = array<i64: 0, 2, 3, 1>} : (tensor<1x4x2x2xf32>) -> tensor<1x2x2x4xf32>
// CHECK-NEXT:    graph.layout_transform %{{.*}} {src_layout = "NCHW", dst_layout = "NHWC"} : (tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
// CHECK-NEXT:    graph.resize %{{.*}} {mode = "nearest", coordinate_transformation_mode = "asymmetric", nearest_mode = "floor", scales = array<f32: 1.000000e+00, 1.000000e+00, 2.000000e+00, 2.000000e+00>} : (tensor<1x4x2x2xf32>) -> tensor<1x4x4x4xf32>

func.func @generic(%x: tensor<1x10xf32>, %k: tensor<1xi64>) {
  %0, %1 = graph.onnx %x, %k {op_type = "TopK", domain = "", opset = 17 : i64, attrs = {axis = -1 : i64, largest = 1 : i64, t = dense<"0x0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000803F"> : tensor<18xf32>, g = {onnx.GraphProto = "0A00"}, s = ["a", "b"]}, onnx_node = "topk"} : (tensor<1x10xf32>, tensor<1xi64>) -> (tensor<1x3xf32>, tensor<1x3xi64>)
  %2 = graph.onnx %x {op_type = "Foo", domain = "com.example", opset = 1 : i64, attrs = {}, input_indices = array<i64: 1>} : (tensor<1x10xf32>) -> tensor<1x10xf32>
  func.return
}
// CHECK-LABEL: func.func @generic
// CHECK:         %{{.*}}, %{{.*}} = graph.onnx %{{.*}}, %{{.*}} {op_type = "TopK", domain = "", opset = 17 : i64, attrs = {axis = -1 : i64, largest = 1 : i64, t = dense<"0x0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000C07F0000803F"> : tensor<18xf32>, g = {onnx.GraphProto = "0A00"}, s = ["a", "b"]}, onnx_node = "topk"} : (tensor<1x10xf32>, tensor<1xi64>) -> (tensor<1x3xf32>, tensor<1x3xi64>)
// CHECK-NEXT:    graph.onnx %{{.*}} {op_type = "Foo", domain = "com.example", opset = 1 : i64, attrs = {}, input_indices = array<i64: 1>} : (tensor<1x10xf32>) -> tensor<1x10xf32>
// ELIDE-LABEL: func.func @generic
// ELIDE:         attrs = {axis = -1 : i64, largest = 1 : i64, t = dense_resource<__elided__> : tensor<18xf32>
