"""What every benchmark script shares: peak memory of a block and a timed call, on CUDA or the CPU, and a
description of the machine that measured them."""

from __future__ import annotations

import os
import platform
import threading
import time

import torch


class PeakMemory:
    """Peak memory of a block above what was held when it started, in bytes."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.peak = 0

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            import psutil  # CPU runs only (the GPU machine need not have it)

            self.process, self.start, self.stop = psutil.Process(), psutil.Process().memory_info().rss, False
            self.top = self.start
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while not self.stop:
            self.top = max(self.top, self.process.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.start
        else:
            self.stop = True
            self.thread.join()
            self.top = max(self.top, self.process.memory_info().rss)
            self.peak = self.top - self.start


def timed(device, fn, *args, **kwargs):
    """fn(*args, **kwargs) -> (result, seconds, peak bytes above the start)."""
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return result, seconds, mem.peak


def machine(device: torch.device) -> dict:
    """Where a number was measured: the card on CUDA, else the CPU, its cores and the load average."""
    info = {"device": str(device), "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    else:
        info["torch_threads"] = torch.get_num_threads()
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info
