"""Independent ex07: statistics of the valid frames selected by boolean indexing."""
import torch
from torch import nn


class SequenceWiseBatchNorm(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x, lengths):
        T, B, H = x.shape
        valid = torch.arange(T).unsqueeze(1) < torch.as_tensor(lengths).unsqueeze(0)    # (T, B)
        frames = x[valid]                                                                 # (n, H)
        n = frames.shape[0]
        if self.training:
            mean = frames.mean(0)
            var = ((frames - mean) ** 2).mean(0)
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                unbiased = var * n / max(n - 1, 1)
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * unbiased.detach())
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
        return y * valid.unsqueeze(2).to(y.dtype)
