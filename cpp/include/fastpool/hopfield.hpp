// Hopfield pooling (Ramsauer et al. 2020, the HopfieldPooling layer): per sample, the
// softmax attention of Q query patterns over the L positions of the input (keys and
// values both the positions' C features), fused so that no (Q x L) matrix larger than
// a tile is ever held.
#pragma once

#include "fastpool/geometry.hpp"

namespace fastpool {

/// x: (N, C, L) or (N, L, C) (channels_last), C-contiguous; queries (Q, C); the output
/// and grad_output (N, Q, C).
struct HopfieldProblem {
  index_t batch = 1, channels = 1, positions = 1, queries = 1;
  bool channels_last = false;
};

/// Throws std::invalid_argument unless every size is in [1, 2**40] and the element
/// counts fit in int64.
void check_hopfield(const HopfieldProblem& hp);

}  // namespace fastpool
