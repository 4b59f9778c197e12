// Input of mlip_residency.mlir's CONCAT case: conv a, conv b on a, Concat(a, b) along the
// channels, a 1x1 conv on the Concat (NHWC, two tiles).
func.func @tvmgen_mrvl_main_0(%x: tensor<1x8x4x8xf32>) -> tensor<1x8x4x8xf32> attributes {mrvl.target = "accelerator"} {
  %w = graph.constant dense<2.500000e-01> : tensor<8x1x1x8xf32>
  %v = graph.constant dense<1.250000e-01> : tensor<8x1x1x8xf32>
  %u = graph.constant dense<6.250000e-02> : tensor<8x1x1x16xf32>
  %a = mrvl.conv2d %x, %w {activation = "relu", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x8x4x8xf32>, tensor<8x1x1x8xf32>) -> tensor<1x8x4x8xf32>
  %b = mrvl.conv2d %a, %v {activation = "none", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_2", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x8x4x8xf32>, tensor<8x1x1x8xf32>) -> tensor<1x8x4x8xf32>
  %c = mrvl.concat %a, %b {layer_name = "tvmgen_mrvl_main_3", axis = 3 : i64} : (tensor<1x8x4x8xf32>, tensor<1x8x4x8xf32>) -> tensor<1x8x4x16xf32>
  %y = mrvl.conv2d %c, %u {activation = "none", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_4", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x8x4x16xf32>, tensor<8x1x1x16xf32>) -> tensor<1x8x4x8xf32>
  func.return %y : tensor<1x8x4x8xf32>
}
