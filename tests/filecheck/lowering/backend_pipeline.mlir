// RUN: mrvl-opt %s -p 'graph-cleanup,convert-graph-to-mrvl,mrvl-partition,mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip,mlip-ocm-alloc,mlip-dma-schedule' > %t.mlir
// RUN: filecheck %s < %t.mlir
// RUN: mrvl-opt %t.mlir | diff %t.mlir -
// RUN: mrvl-opt %s -p 'graph-cleanup,convert-graph-to-mrvl,mrvl-partition,mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip,mlip-ocm-alloc,mlip-dma-schedule' -t mlip-asm > %t.asm
// RUN: mrvl-opt %t.mlir -t mlip-asm | diff %t.asm -

// The whole backend pipeline on a graph-level .mlir file: graph clean-up, graph -> mrvl,
// partition, the mrvl annotations (precision, tile split), mrvl -> mlip, OCM allocation and
// DMA scheduling. The printed mlip IR parses back and prints the same (third RUN line), and
// the listing of the parsed IR is the listing of the compiled one (fifth).

func.func @main(%x: tensor<1x4x4x2xf32>) -> tensor<1x4x4x3xf32> {
  %w = graph.constant dense<5.000000e-01> : tensor<3x1x1x2xf32>
  %c = graph.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NHWC", kernel_layout = "OHWI"} : (tensor<1x4x4x2xf32>, tensor<3x1x1x2xf32>) -> tensor<1x4x4x3xf32>
  %r = graph.relu %c : (tensor<1x4x4x3xf32>) -> tensor<1x4x4x3xf32>
  func.return %r : tensor<1x4x4x3xf32>
}

// CHECK:       func.func @main
// CHECK:         func.call @[[SUB:[a-z_0-9]+]](
// CHECK:       mlip.model @[[SUB]] attributes {num_tiles = 2 : i64, {{.*}}ocm_end = {{[0-9]+}} : i64}
// CHECK:         mlip.tensor
// CHECK:         %{{.+}} = mlip.buffer "w", size = {{[0-9]+}}, slots = 1, kind = weights, layer = 0, addrs = [0]
// CHECK:         mlip.layer @{{.+}} attributes {kind = "Conv2D", {{.*}}} {
// CHECK-NEXT:    }
// CHECK:         mlip.section attributes {section = "main"} {
// CHECK:           %{{[0-9]+}} = mlip.conv {{.*}}act = relu, {{.*}}tile = 0, pop_prev = %{{[0-9]+}}, push_next
// CHECK:           mlip.conv {{.*}}tile = 1,
