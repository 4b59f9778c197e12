// RUN: mrvl-opt %s -p graph-widen-f16 --split-input-file | filecheck %s

// An f16 function computes in f32 inside: a Cast after the argument, f32 constants and
// modelled ops, a Cast back to f16 before the return; the signature is unchanged.

func.func @half(%x: tensor<1x4xf16>) -> tensor<1x4xf16> {
  %c = graph.constant dense<[1.5, -2.0, 0.25, 3.0]> : tensor<4xf16>
  %a = graph.add %x, %c : (tensor<1x4xf16>, tensor<4xf16>) -> tensor<1x4xf16>
  %r = graph.relu %a : (tensor<1x4xf16>) -> tensor<1x4xf16>
  func.return %r : tensor<1x4xf16>
}

// CHECK-LABEL: func.func @half
// CHECK-SAME:  (%[[X:.+]]: tensor<1x4xf16>) -> tensor<1x4xf16>
// CHECK-NEXT:    %[[W:.+]] = graph.onnx %[[X]] {op_type = "Cast", domain = "", opset = 13 : i64, attrs = {to = 1 : i64}} : (tensor<1x4xf16>) -> tensor<1x4xf32>
// CHECK-NEXT:    %[[C:.+]] = graph.constant dense<[1.500000e+00, -2.000000e+00, 2.500000e-01, 3.000000e+00]> : tensor<4xf32>
// CHECK-NEXT:    %[[A:.+]] = graph.add %[[W]], %[[C]] : (tensor<1x4xf32>, tensor<4xf32>) -> tensor<1x4xf32>
// CHECK-NEXT:    %[[R:.+]] = graph.relu %[[A]] : (tensor<1x4xf32>) -> tensor<1x4xf32>
// CHECK-NEXT:    %[[N:.+]] = graph.onnx %[[R]] {op_type = "Cast", domain = "", opset = 13 : i64, attrs = {to = 10 : i64}} : (tensor<1x4xf32>) -> tensor<1x4xf16>
// CHECK-NEXT:    func.return %[[N]] : tensor<1x4xf16>

// -----

// A generic op keeps its f16 semantics: it reads the f16 argument itself, its f16 result is
// cast to f32, and a widened operand is cast back to f16.

func.func @generic(%x: tensor<1x4xf16>) -> tensor<1x4xf16> {
  %e = graph.onnx %x {op_type = "Erf", domain = "", opset = 13 : i64, attrs = {}} : (tensor<1x4xf16>) -> tensor<1x4xf16>
  %r = graph.relu %e : (tensor<1x4xf16>) -> tensor<1x4xf16>
  %t = graph.onnx %r {op_type = "Tanh", domain = "", opset = 13 : i64, attrs = {}} : (tensor<1x4xf16>) -> tensor<1x4xf16>
  func.return %t : tensor<1x4xf16>
}

// CHECK-LABEL: func.func @generic
// CHECK-SAME:  (%[[X:.+]]: tensor<1x4xf16>)
// CHECK-NEXT:    %[[E:.+]] = graph.onnx %[[X]] {op_type = "Erf"{{.*}}: (tensor<1x4xf16>) -> tensor<1x4xf16>
// CHECK-NEXT:    %[[E32:.+]] = graph.onnx %[[E]] {op_type = "Cast", {{.*}} attrs = {to = 1 : i64}} : (tensor<1x4xf16>) -> tensor<1x4xf32>
// CHECK-NEXT:    %[[R:.+]] = graph.relu %[[E32]] : (tensor<1x4xf32>) -> tensor<1x4xf32>
// CHECK-NEXT:    %[[N:.+]] = graph.onnx %[[R]] {op_type = "Cast", {{.*}} attrs = {to = 10 : i64}} : (tensor<1x4xf32>) -> tensor<1x4xf16>
// CHECK-NEXT:    %[[T:.+]] = graph.onnx %[[N]] {op_type = "Tanh"{{.*}}: (tensor<1x4xf16>) -> tensor<1x4xf16>
// CHECK-NEXT:    func.return %[[T]] : tensor<1x4xf16>

// -----

// Not lowered: an f32 function is left as it is.

func.func @single(%x: tensor<1x4xf32>) -> tensor<1x4xf32> {
  %r = graph.relu %x : (tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return %r : tensor<1x4xf32>
}

// CHECK-LABEL: func.func @single
// CHECK-NEXT:    %{{.+}} = graph.relu %{{.+}} : (tensor<1x4xf32>) -> tensor<1x4xf32>
// CHECK-NEXT:    func.return
