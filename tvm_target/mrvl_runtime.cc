/*
 * mrvl_runtime.cc -- the TVM runtime module of one mrvl accelerator region (kind "mrvl").
 *
 * Holds the region's model binary and its I/O table; the function named after the region's
 * symbol is the destination-passing call the Relax VM makes (inputs..., outputs...): it copies
 * each input into the simulated DRAM, runs the binary on the mlip simulator core
 * (csrc/mlip_sim.h, linked from mrvl's own build of it) and copies each output back.
 * SaveToBytes / "ffi.Module.load_from_bytes.mrvl" carry the module through export_library and
 * tvm.runtime.load_module; loading this library (import mrvl.tvm) registers the loader.
 */
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/reflection/registry.h>
#include <tvm/ffi/string.h>

#include <cstdint>
#include <cstring>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

extern "C" {
#include "mlip_sim.h"
}

namespace mrvl_tvm {

namespace ffi = tvm::ffi;

/* One binary input or output: where it lives in the simulated DRAM and its size in bytes. */
struct IOSlot {
  uint64_t offset;
  uint64_t bytes;
};

/* The I/O table's text form: "<inputs> <outputs>" then "offset bytes" per slot. */
static void ParseIOTable(const std::string& text, std::vector<IOSlot>* inputs,
                         std::vector<IOSlot>* outputs) {
  std::istringstream in(text);
  size_t num_inputs = 0, num_outputs = 0;
  if (!(in >> num_inputs >> num_outputs)) {
    TVM_FFI_THROW(ValueError) << "mrvl: malformed I/O table '" << text << "'";
  }
  for (size_t i = 0; i < num_inputs + num_outputs; ++i) {
    IOSlot slot{};
    if (!(in >> slot.offset >> slot.bytes)) {
      TVM_FFI_THROW(ValueError) << "mrvl: malformed I/O table '" << text << "'";
    }
    (i < num_inputs ? inputs : outputs)->push_back(slot);
  }
}

static size_t TensorBytes(const DLTensor* tensor) {
  size_t count = 1;
  for (int i = 0; i < tensor->ndim; ++i) count *= static_cast<size_t>(tensor->shape[i]);
  return count * ((tensor->dtype.bits * tensor->dtype.lanes + 7) / 8);
}

class MrvlModuleObj : public ffi::ModuleObj {
 public:
  MrvlModuleObj(std::string symbol, std::string binary, std::string io_table)
      : symbol_(std::move(symbol)), binary_(std::move(binary)), io_table_(std::move(io_table)) {
    ParseIOTable(io_table_, &inputs_, &outputs_);
  }

  ~MrvlModuleObj() {
    if (sim_ != nullptr) mlip_sim_free(sim_);
  }

  const char* kind() const final { return "mrvl"; }

  int GetPropertyMask() const final {
    return ffi::Module::kBinarySerializable | ffi::Module::kRunnable;
  }

  ffi::Optional<ffi::Function> GetFunction(const ffi::String& name) final {
    ffi::ObjectPtr<ffi::Object> self = ffi::details::ObjectUnsafe::ObjectPtrFromUnowned<ffi::Object>(this);
    if (name == symbol_) {
      return ffi::Function::FromPacked([self, this](ffi::PackedArgs args, ffi::Any*) {
        Run(args);
      });
    }
    if (name == "get_symbol") {
      return ffi::Function::FromPacked(
          [self, this](ffi::PackedArgs, ffi::Any* rv) { *rv = ffi::String(symbol_); });
    }
    if (name == "get_binary") {
      return ffi::Function::FromPacked(
          [self, this](ffi::PackedArgs, ffi::Any* rv) { *rv = ffi::Bytes(binary_); });
    }
    if (name == "get_cycles") {
      return ffi::Function::FromPacked(
          [self, this](ffi::PackedArgs, ffi::Any* rv) { *rv = last_cycles_; });
    }
    return std::nullopt;
  }

  ffi::Bytes SaveToBytes() const final {
    std::string out;
    for (const std::string* field : {&symbol_, &binary_, &io_table_}) {
      uint64_t size = field->size();
      out.append(reinterpret_cast<const char*>(&size), sizeof(size));
      out.append(*field);
    }
    return ffi::Bytes(out);
  }

  static ffi::Module LoadFromBytes(const ffi::Bytes& bytes) {
    const char* data = bytes.data();
    size_t left = bytes.size();
    std::string fields[3];
    for (std::string& field : fields) {
      uint64_t size = 0;
      if (left < sizeof(size)) TVM_FFI_THROW(ValueError) << "mrvl: truncated module bytes";
      std::memcpy(&size, data, sizeof(size));
      data += sizeof(size);
      left -= sizeof(size);
      if (left < size) TVM_FFI_THROW(ValueError) << "mrvl: truncated module bytes";
      field.assign(data, size);
      data += size;
      left -= size;
    }
    return ffi::Module(ffi::make_object<MrvlModuleObj>(fields[0], fields[1], fields[2]));
  }

 private:
  void Load() {
    mlip_params params;
    mlip_default_params(&params);
    char msg[1024] = {0};
    int status = mlip_sim_load(&sim_, reinterpret_cast<const uint8_t*>(binary_.data()),
                               binary_.size(), &params, msg, sizeof(msg));
    if (status != MLIP_OK) {
      sim_ = nullptr;
      TVM_FFI_THROW(RuntimeError) << "mrvl: " << symbol_ << ": " << msg;
    }
  }

  void Run(ffi::PackedArgs args) {
    std::lock_guard<std::mutex> lock(mutex_);  // one simulated machine: one run at a time
    size_t expected = inputs_.size() + outputs_.size();
    if (static_cast<size_t>(args.size()) != expected) {
      TVM_FFI_THROW(TypeError) << "mrvl: " << symbol_ << " takes " << expected
                               << " tensors (inputs then outputs), got " << args.size();
    }
    if (sim_ == nullptr) Load();
    uint64_t dram_size = 0;
    uint8_t* dram = mlip_sim_dram(sim_, &dram_size);
    for (size_t i = 0; i < expected; ++i) {
      const IOSlot& slot = i < inputs_.size() ? inputs_[i] : outputs_[i - inputs_.size()];
      DLTensor* tensor = args[i].cast<DLTensor*>();
      if (tensor->device.device_type != kDLCPU) {
        TVM_FFI_THROW(ValueError) << "mrvl: " << symbol_ << " runs on CPU tensors only";
      }
      if (TensorBytes(tensor) != slot.bytes || slot.offset + slot.bytes > dram_size) {
        TVM_FFI_THROW(ValueError) << "mrvl: " << symbol_ << " tensor " << i << " has "
                                  << TensorBytes(tensor) << " bytes, the binary expects "
                                  << slot.bytes;
      }
    }
    for (size_t i = 0; i < inputs_.size(); ++i) {
      DLTensor* tensor = args[i].cast<DLTensor*>();
      std::memcpy(dram + inputs_[i].offset,
                  static_cast<const uint8_t*>(tensor->data) + tensor->byte_offset,
                  inputs_[i].bytes);
    }
    mlip_stats stats;
    char msg[1024] = {0};
    int status = mlip_sim_run(sim_, &stats, nullptr, 0, msg, sizeof(msg));
    if (status != MLIP_OK) {
      TVM_FFI_THROW(RuntimeError) << "mrvl: " << symbol_ << ": " << msg;
    }
    last_cycles_ = static_cast<int64_t>(stats.cycles);
    for (size_t i = 0; i < outputs_.size(); ++i) {
      DLTensor* tensor = args[inputs_.size() + i].cast<DLTensor*>();
      std::memcpy(static_cast<uint8_t*>(tensor->data) + tensor->byte_offset,
                  dram + outputs_[i].offset, outputs_[i].bytes);
    }
  }

  std::string symbol_;
  std::string binary_;
  std::string io_table_;
  std::vector<IOSlot> inputs_;
  std::vector<IOSlot> outputs_;
  mlip_sim* sim_ = nullptr;
  int64_t last_cycles_ = 0;
  std::mutex mutex_;
};

TVM_FFI_STATIC_INIT_BLOCK() {
  namespace refl = tvm::ffi::reflection;
  refl::GlobalDef()
      .def("mrvl.runtime.create",
           [](ffi::String symbol, ffi::Bytes binary, ffi::String io_table) {
             return ffi::Module(ffi::make_object<MrvlModuleObj>(
                 std::string(symbol), std::string(binary.data(), binary.size()),
                 std::string(io_table)));
           })
      .def("ffi.Module.load_from_bytes.mrvl", MrvlModuleObj::LoadFromBytes);
}

}  // namespace mrvl_tvm
