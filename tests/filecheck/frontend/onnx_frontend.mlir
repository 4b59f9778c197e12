// RUN: mrvl-opt %S/Inputs/small_cnn.onnxtxt | filecheck %s
// RUN: mrvl-opt %S/Inputs/small_cnn.onnxtxt --batch-size 3 | filecheck %s --check-prefix=BATCH
// RUN: mrvl-opt %S/Inputs/small_cnn.onnxtxt | mrvl-opt | filecheck %s

// The ONNX frontend of mrvl-opt: an ONNX text-format model imported into the graph dialect
// (a symbolic batch becomes 1, or --batch-size; TopK is not modelled: graph.onnx).

// CHECK:      func.func @main(%[[X:.*]]: tensor<1x1x6x6xf32> {graph.name = "x"}) -> (tensor<1x8xf32>, tensor<1x2xi64>) attributes {graph.output_names = ["y", "idx"]} {
// CHECK-NEXT:   %[[W:.*]] = graph.constant {onnx_node = "w"} dense<"0x0000803F00000000000080BF0000004000000000000000C00000803F00000000000080BF000000000000803F000000000000803F000080C00000803F000000000000803F00000000"> : tensor<2x1x3x3xf32>
// CHECK-NEXT:   %[[B:.*]] = graph.constant {onnx_node = "b"} dense<[5.000000e-01, -5.000000e-01]> : tensor<2xf32>
// CHECK-NEXT:   %[[K:.*]] = graph.constant {onnx_node = "k"} dense<2> : tensor<1xi64>
// CHECK-NEXT:   %[[C:.*]] = graph.conv2d %[[X]], %[[W]], %[[B]] {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCHW", kernel_layout = "OIHW", onnx_node = "Conv_0"} : (tensor<1x1x6x6xf32>, tensor<2x1x3x3xf32>, tensor<2xf32>) -> tensor<1x2x6x6xf32>
// CHECK-NEXT:   %[[R:.*]] = graph.relu %[[C]] {onnx_node = "Relu_1"}
// CHECK-NEXT:   %[[P:.*]] = graph.max_pool2d %[[R]] {{.*}} -> tensor<1x2x2x2xf32>
// CHECK-NEXT:   %[[Y:.*]] = graph.reshape %[[P]] {onnx_node = "Reshape_3"} : (tensor<1x2x2x2xf32>) -> tensor<1x8xf32>
// CHECK-NEXT:   %{{.*}}, %[[I:.*]] = graph.onnx %[[Y]], %[[K]] {op_type = "TopK", domain = "", opset = 13 : i64, attrs = {axis = 1 : i64}, onnx_node = "TopK_4"} : (tensor<1x8xf32>, tensor<1xi64>) -> (tensor<1x2xf32>, tensor<1x2xi64>)
// CHECK-NEXT:   func.return %[[Y]], %[[I]] : tensor<1x8xf32>, tensor<1x2xi64>

// BATCH: func.func @main(%{{.*}}: tensor<3x1x6x6xf32> {graph.name = "x"}) -> (tensor<3x8xf32>, tensor<3x2xi64>)
