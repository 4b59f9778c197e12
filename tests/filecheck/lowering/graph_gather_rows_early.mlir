// RUN: mrvl-opt %s -p graph-gather-rows-early --split-input-file | filecheck %s

// A ViT tail: residual Add, LayerNorm, Linear (matmul + bias add), GELU's Erf, then a
// Gather of row 0. Every row-wise op moves below one-row Gathers of its row operands;
// the bias and the scalar broadcast over the rows and are kept.

func.func @tail(%x: tensor<1x5x4xf32>, %y: tensor<1x5x4xf32>) -> tensor<1x1x3xf32> {
  %g = graph.constant dense<1.0> : tensor<4xf32>
  %b = graph.constant dense<0.0> : tensor<4xf32>
  %w = graph.constant dense<0.5> : tensor<4x3xf32>
  %c = graph.constant dense<0.25> : tensor<3xf32>
  %s = graph.constant dense<2.0> : tensor<f32>
  %i = graph.constant dense<[0]> : tensor<1xi64>
  %sum = graph.add %x, %y : (tensor<1x5x4xf32>, tensor<1x5x4xf32>) -> tensor<1x5x4xf32>
  %n = graph.onnx %sum, %g, %b {op_type = "LayerNormalization", domain = "", opset = 17 : i64, attrs = {axis = -1 : i64, epsilon = 1.000000e-05 : f32}} : (tensor<1x5x4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<1x5x4xf32>
  %m = graph.matmul %n, %w : (tensor<1x5x4xf32>, tensor<4x3xf32>) -> tensor<1x5x3xf32>
  %a = graph.add %m, %c : (tensor<1x5x3xf32>, tensor<3xf32>) -> tensor<1x5x3xf32>
  %d = graph.div %a, %s : (tensor<1x5x3xf32>, tensor<f32>) -> tensor<1x5x3xf32>
  %e = graph.onnx %d {op_type = "Erf", domain = "", opset = 17 : i64, attrs = {}} : (tensor<1x5x3xf32>) -> tensor<1x5x3xf32>
  %r = graph.onnx %e, %i {op_type = "Gather", domain = "", opset = 17 : i64, attrs = {axis = 1 : i64}} : (tensor<1x5x3xf32>, tensor<1xi64>) -> tensor<1x1x3xf32>
  func.return %r : tensor<1x1x3xf32>
}

// CHECK-LABEL: func.func @tail
// CHECK-SAME:  (%[[X:.+]]: tensor<1x5x4xf32>, %[[Y:.+]]: tensor<1x5x4xf32>)
// CHECK-DAG:     %[[GX:.+]] = graph.onnx %[[X]], %{{.+}} {op_type = "Gather"{{.*}} -> tensor<1x1x4xf32>
// CHECK-DAG:     %[[GY:.+]] = graph.onnx %[[Y]], %{{.+}} {op_type = "Gather"{{.*}} -> tensor<1x1x4xf32>
// CHECK:         %[[SUM:.+]] = graph.add %[[GX]], %[[GY]] : (tensor<1x1x4xf32>, tensor<1x1x4xf32>) -> tensor<1x1x4xf32>
// CHECK-NEXT:    %[[N:.+]] = graph.onnx %[[SUM]], %{{.+}}, %{{.+}} {op_type = "LayerNormalization"{{.*}} -> tensor<1x1x4xf32>
// CHECK-NEXT:    %[[M:.+]] = graph.matmul %[[N]], %{{.+}} : (tensor<1x1x4xf32>, tensor<4x3xf32>) -> tensor<1x1x3xf32>
// CHECK-NEXT:    %[[A:.+]] = graph.add %[[M]], %{{.+}} : (tensor<1x1x3xf32>, tensor<3xf32>) -> tensor<1x1x3xf32>
// CHECK-NEXT:    %[[D:.+]] = graph.div %[[A]], %{{.+}} : (tensor<1x1x3xf32>, tensor<f32>) -> tensor<1x1x3xf32>
// CHECK-NEXT:    %[[E:.+]] = graph.onnx %[[D]] {op_type = "Erf"{{.*}} -> tensor<1x1x3xf32>
// CHECK-NEXT:    func.return %[[E]] : tensor<1x1x3xf32>

// -----

// Not moved: the Add's result has another reader (all rows are needed), a LayerNorm
// normalises over the gathered axis, and a Gather of two indices.

func.func @kept(%x: tensor<1x5x4xf32>, %y: tensor<1x5x4xf32>) -> (tensor<1x1x4xf32>, tensor<1x5x4xf32>, tensor<1x5x1xf32>, tensor<1x2x4xf32>) {
  %g = graph.constant dense<1.0> : tensor<4xf32>
  %b = graph.constant dense<0.0> : tensor<4xf32>
  %i = graph.constant dense<[0]> : tensor<1xi64>
  %j = graph.constant dense<[0, 1]> : tensor<2xi64>
  %sum = graph.add %x, %y : (tensor<1x5x4xf32>, tensor<1x5x4xf32>) -> tensor<1x5x4xf32>
  %r = graph.onnx %sum, %i {op_type = "Gather", domain = "", opset = 17 : i64, attrs = {axis = 1 : i64}} : (tensor<1x5x4xf32>, tensor<1xi64>) -> tensor<1x1x4xf32>
  %n = graph.onnx %x, %g, %b {op_type = "LayerNormalization", domain = "", opset = 17 : i64, attrs = {axis = -1 : i64, epsilon = 1.000000e-05 : f32}} : (tensor<1x5x4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<1x5x4xf32>
  %c = graph.onnx %n, %i {op_type = "Gather", domain = "", opset = 17 : i64, attrs = {axis = 2 : i64}} : (tensor<1x5x4xf32>, tensor<1xi64>) -> tensor<1x5x1xf32>
  %e = graph.onnx %y {op_type = "Erf", domain = "", opset = 17 : i64, attrs = {}} : (tensor<1x5x4xf32>) -> tensor<1x5x4xf32>
  %t = graph.onnx %e, %j {op_type = "Gather", domain = "", opset = 17 : i64, attrs = {axis = 1 : i64}} : (tensor<1x5x4xf32>, tensor<2xi64>) -> tensor<1x2x4xf32>
  func.return %r, %sum, %c, %t : tensor<1x1x4xf32>, tensor<1x5x4xf32>, tensor<1x5x1xf32>, tensor<1x2x4xf32>
}

// CHECK-LABEL: func.func @kept
// CHECK:         %[[SUM:.+]] = graph.add %{{.+}}, %{{.+}} : (tensor<1x5x4xf32>, tensor<1x5x4xf32>) -> tensor<1x5x4xf32>
// CHECK-NEXT:    %{{.+}} = graph.onnx %[[SUM]], %{{.+}} {op_type = "Gather"
// CHECK-NEXT:    %[[N:.+]] = graph.onnx %{{.+}}, %{{.+}}, %{{.+}} {op_type = "LayerNormalization"{{.*}} -> tensor<1x5x4xf32>
// CHECK-NEXT:    %{{.+}} = graph.onnx %[[N]], %{{.+}} {op_type = "Gather"{{.*}}axis = 2
// CHECK-NEXT:    %[[E:.+]] = graph.onnx %{{.+}} {op_type = "Erf"{{.*}} -> tensor<1x5x4xf32>
// CHECK-NEXT:    %{{.+}} = graph.onnx %[[E]], %{{.+}} {op_type = "Gather"

// -----

// An operand of lower rank that still carries the rows (a [5, 4] table broadcast over the
// batch) is gathered on its own axis 0; a constant one becomes its row.

func.func @ranks(%x: tensor<1x5x4xf32>, %y: tensor<5x4xf32>) -> tensor<1x1x4xf32> {
  %p = graph.constant dense<[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0], [3.0, 3.0, 3.0, 3.0]]> : tensor<5x4xf32>
  %i = graph.constant dense<[1]> : tensor<1xi64>
  %a = graph.add %x, %y : (tensor<1x5x4xf32>, tensor<5x4xf32>) -> tensor<1x5x4xf32>
  %b = graph.mul %a, %p : (tensor<1x5x4xf32>, tensor<5x4xf32>) -> tensor<1x5x4xf32>
  %r = graph.onnx %b, %i {op_type = "Gather", domain = "", opset = 17 : i64, attrs = {axis = 1 : i64}} : (tensor<1x5x4xf32>, tensor<1xi64>) -> tensor<1x1x4xf32>
  func.return %r : tensor<1x1x4xf32>
}

// CHECK-LABEL: func.func @ranks
// CHECK-SAME:  (%[[X:.+]]: tensor<1x5x4xf32>, %[[Y:.+]]: tensor<5x4xf32>)
// CHECK-DAG:     %[[GX:.+]] = graph.onnx %[[X]], %{{.+}} {op_type = "Gather", domain = "", opset = 17 : i64, attrs = {axis = 1 : i64}} : (tensor<1x5x4xf32>, tensor<1xi64>) -> tensor<1x1x4xf32>
// CHECK-DAG:     %[[GY:.+]] = graph.onnx %[[Y]], %{{.+}} {op_type = "Gather", domain = "", opset = 17 : i64, attrs = {axis = 0 : i64}} : (tensor<5x4xf32>, tensor<1xi64>) -> tensor<1x4xf32>
// CHECK:         %[[A:.+]] = graph.add %[[GX]], %[[GY]] : (tensor<1x1x4xf32>, tensor<1x4xf32>) -> tensor<1x1x4xf32>
// CHECK-NEXT:    %[[P:.+]] = graph.constant dense<[[5.000000e+00, 6.000000e+00, 7.000000e+00, 8.000000e+00]]> : tensor<1x4xf32>
// CHECK-NEXT:    %[[B:.+]] = graph.mul %[[A]], %[[P]] : (tensor<1x1x4xf32>, tensor<1x4xf32>) -> tensor<1x1x4xf32>
// CHECK-NEXT:    func.return %[[B]] : tensor<1x1x4xf32>
