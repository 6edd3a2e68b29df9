"""Which device a local torch model runs on, in which dtype, and what that hardware can do.

One rule for training, DPO generation and answer likelihood: CUDA when there is one, in
bf16 where the GPU supports it (fp16 where it does not), else the CPU in float32.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
from typing import Any

# Dense bf16 tensor-core peaks, TFLOPS, from the vendors' data sheets (no sparsity). Matched
# against torch's device name in this order, so a specific name wins over its family.
PEAK_BF16_TFLOPS = [
    ("B200", 2250.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H800", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 6000 Ada", 364.0),
    ("RTX 4090", 165.0),
    ("RTX 3090", 71.0),
]


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def device() -> str:
    """`cuda` or `cpu`: where a local model is put."""
    return "cuda" if cuda() else "cpu"


def dtype() -> Any:
    """bf16 on a GPU that has it, fp16 on one that does not, float32 on the CPU."""
    import torch

    if not cuda():
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def dtype_name(value: Any) -> str:
    return str(value).removeprefix("torch.")


def device_name() -> str:
    """The GPU's name as the driver gives it, else the CPU's."""
    if cuda():
        import torch

        return torch.cuda.get_device_name()
    return f"cpu ({cpu_model() or platform.machine()}, {os.cpu_count()} cores)"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def peak_tflops(name: str | None = None) -> float | None:
    """The dense bf16 peak of a known GPU, or None (a CPU, or a GPU not in the table)."""
    name = name if name is not None else (device_name() if cuda() else "")
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value
    return None


def reset_peak_memory() -> None:
    if cuda():
        import torch

        torch.cuda.reset_peak_memory_stats()


def peak_memory_bytes() -> int:
    """Peak accelerator memory allocated by torch since the last reset; on the CPU, the
    process's peak resident set (which includes everything the process loaded)."""
    if cuda():
        import torch

        return int(torch.cuda.max_memory_allocated())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def free_memory_bytes() -> int:
    """Memory a model could still take: free GPU memory, else available RAM."""
    if cuda():
        import torch

        return int(torch.cuda.mem_get_info()[0])
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
