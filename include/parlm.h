/* parlm.h — umbrella header: everything public in libparlm. */
#ifndef PARLM_H
#define PARLM_H
#include "parlm/status.h"
#include "parlm/version.h"
#include "parlm/isa.h"
#include "parlm/peak.h"
#include "parlm/tensor.h"
#include "parlm/bf16.h"
#include "parlm/gemm.h"
#include "parlm/ops.h"
#include "parlm/topo.h"
#include "parlm/tokenizer.h"
#include "parlm/data.h"
#include "parlm/nn.h"
#include "parlm/llama_ops.h"
#include "parlm/sample.h"
#include "parlm/model.h"
#include "parlm/checkpoint.h"
#include "parlm/quant.h"
#include "parlm/gguf.h"
#include "parlm/safetensors.h"
#include "parlm/trainer.h"
#include "parlm/plan.h"
#if PARLM_WITH_MPI
#include "parlm/dist.h"
#include "parlm/dp.h"
#include "parlm/tp.h"
#include "parlm/grid.h"
#include "parlm/pp.h"
#endif
#endif
