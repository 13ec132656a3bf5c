"""A CPU stand-in for a GPU, so the tests find device bugs on a machine without one (issue 18).

Inside ``FakeDevice("cuda")`` (or ``"mps"``), a tensor or module moved to that device stays on the CPU
but is *tagged* as being on it: ``x.device`` answers ``cuda``, and what real hardware would refuse
fails the test with ``DeviceBug``:

- one operation mixing tensors on the device with tensors on the CPU (0-d CPU tensors excepted, as
  CUDA accepts them; copies and indexing with CPU indices are allowed, as on CUDA);
- ``.numpy()`` of a tensor on the device;
- a random draw on the device with a CPU ``torch.Generator`` (draw on the CPU, then move);
- float64 on an ``"mps"`` device (Apple's GPUs have none).

It also counts host-device synchronisations (``.item()``, ``.tolist()``, ``bool()``, copies back to
the CPU), which make a real GPU wait, so tests can bound them per training or sampling step.

A tensor is tagged by its storage, so views, ``.data`` and Parameters made from it are on the device
too. The mode holds each tagged storage, so its address cannot be reused by a CPU tensor while it is
tagged; storages that no tensor uses any more are dropped now and then, which keeps memory bounded.
"""

from __future__ import annotations

import os
import sys

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

# moving data between devices, indexing with CPU indices, printing and module plumbing are fine on CUDA
ALLOWED_MIXING = {"copy_", "__getitem__", "__setitem__", "index_put_", "__repr__", "__format__", "__str__",
                  "_has_compatible_shallow_copy_type", "__set__:data", "__set__:grad"}
SYNCS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "nonzero"}


class DeviceBug(AssertionError):
    """What real hardware would have refused."""


def _called_by_torch() -> bool:
    """Whether the code moving a tensor is PyTorch's own (an optimiser, clip_grad_norm_), not ours."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename in (__file__, torch.overrides.__file__):
        frame = frame.f_back
    return frame is not None and f"{os.sep}torch{os.sep}" in frame.f_code.co_filename


def _name(func) -> str:
    name = getattr(func, "__name__", str(func))
    if name in ("__get__", "__set__"):
        return f"{name}:{getattr(getattr(func, '__self__', None), '__name__', '?')}"
    return name


CLEAN_UP_BYTES = 256 * 2**20


class FakeDevice(TorchFunctionMode):
    """Pretend ``device`` ("cuda" or "mps") exists; see the module docstring."""

    def __init__(self, device: str = "cuda") -> None:
        super().__init__()
        self.device = torch.device(device)
        self.storages: dict[int, torch.UntypedStorage] = {}
        self._live = 1024  # storages kept after the last clean-up; a clean-up runs when twice as many are held,
        self._new_bytes = 0  # or when the storages tagged since then hold more than CLEAN_UP_BYTES
        self.syncs = 0
        self.sync_sites: list[str] = []  # where each sync happened (file:line), for a test's failure message

    # --- tagging ----------------------------------------------------------------------------------
    def _ptr(self, t: torch.Tensor) -> int | None:
        try:
            ptr = t.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError):
            return None
        return ptr or None  # an empty tensor has no memory to be anywhere

    def on_device(self, t: object) -> bool:
        return isinstance(t, torch.Tensor) and (p := self._ptr(t)) is not None and p in self.storages

    def tag(self, t: object) -> None:
        if isinstance(t, torch.Tensor) and (p := self._ptr(t)) is not None:
            if self.device.type == "mps" and t.dtype == torch.float64:
                raise DeviceBug(f"float64 on {self.device}: Apple's MPS has no float64; compute it on the CPU")
            if p not in self.storages:
                self.storages[p] = t.untyped_storage()
                self._new_bytes += self.storages[p].nbytes()
                # now and then, forget storages no tensor uses any more: by count, and by size (a few large
                # activations, such as a batch of 1,000 pictures through a network, must not pile up)
                if len(self.storages) > 2 * self._live or self._new_bytes > CLEAN_UP_BYTES:
                    self._forget_unused()

    def _forget_unused(self) -> None:
        """Drop tagged storages that only this mode still holds: nothing on the device uses them, and keeping
        them would hold every intermediate of a long run in memory."""
        self.storages = {p: s for p, s in self.storages.items() if torch._C._storage_Use_Count(s._cdata) > 1}
        self._live = max(1024, len(self.storages))
        self._new_bytes = 0

    def _wants(self, device: object) -> bool:
        if device is None:
            return False
        return torch.device(device).type == self.device.type if isinstance(device, str | torch.device) else False

    def _count_sync(self) -> None:
        self.syncs += 1
        frame = sys._getframe(2)
        while frame is not None and "diffusion_lab" not in frame.f_code.co_filename:
            frame = frame.f_back
        self.sync_sites.append(f"{frame.f_code.co_filename.split('diffusion_lab/')[-1]}:{frame.f_lineno}"
                               if frame is not None else "outside the package")

    # --- the mode ---------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = _name(func)
        if name == "__get__:device" and self.on_device(args[0]):
            return self.device
        if name == "__get__:is_cuda" and self.on_device(args[0]):
            return self.device.type == "cuda"
        if name == "__get__:grad" and self.on_device(args[0]):
            grad = func(*args, **kwargs)  # autograd made it (outside this mode) where its parameter lives
            self.tag(grad)
            return grad
        if name == "numpy" and self.on_device(args[0]):
            raise DeviceBug(f".numpy() of a tensor on {self.device}: call .cpu() first")
        if name in SYNCS and self.on_device(args[0]):
            self._count_sync()
        if name in ("to", "cuda", "cpu"):
            return self._move(func, name, args, kwargs)

        wants = self._wants(kwargs.get("device"))
        if wants:
            kwargs["device"] = "cpu"
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        tagged = [t for t in tensors if self.on_device(t)]
        untagged = [t for t in tensors if not self.on_device(t) and t.ndim > 0 and t.numel() > 0]
        if tagged and untagged and name not in ALLOWED_MIXING:
            raise DeviceBug(f"{name} mixes tensors on {self.device} {[tuple(t.shape) for t in tagged]} with tensors "
                            f"on the CPU {[tuple(t.shape) for t in untagged]}: move them to one device first")
        generator = kwargs.get("generator")
        on_device = wants or bool(tagged)
        if generator is not None and on_device and generator.device.type == "cpu":
            raise DeviceBug(f"{name} draws on {self.device} from a CPU generator: draw on the generator's "
                            f"device and move the result (as diffusers' randn_tensor does)")
        out = func(*args, **kwargs)
        if on_device and not name.startswith("__get__") and name not in SYNCS:
            tree_map(lambda o: self.tag(o) if isinstance(o, torch.Tensor) else None, out)
        return out

    def _move(self, func, name, args, kwargs):
        source = args[0]
        if name == "cuda":
            target = self.device
        elif name == "cpu":
            target = torch.device("cpu")
        else:  # Tensor.to(device | dtype | tensor, ...)
            other = next((a for a in args[1:] if isinstance(a, torch.Tensor)), kwargs.get("other"))
            if other is not None:
                target = self.device if self.on_device(other) else torch.device("cpu")
            else:
                parse = {k: v for k, v in kwargs.items() if k != "copy"}  # _parse_to knows no copy=
                device, *_ = torch._C._nn._parse_to(*args[1:], **parse)
                target = device if device is not None else (self.device if self.on_device(source) else None)
        if target is not None and target.type == "cpu" and self.on_device(source) and _called_by_torch():
            target = self.device  # torch's own internals group tensors by their real (CPU) device: keep them here
        to_device = target is not None and self._wants(target)
        if name == "cuda":
            out = source.clone()
        elif name == "to":
            new_args = [("cpu" if self._wants(a) else a) for a in args]
            if "device" in kwargs and self._wants(kwargs["device"]):
                kwargs["device"] = "cpu"
            if other is not None:
                new_args = [source] + [a.dtype if isinstance(a, torch.Tensor) else a for a in new_args[1:]]
            out = func(*new_args, **kwargs)
        else:
            out = func(*args, **kwargs)
        if to_device:
            if not self.on_device(source):
                out = out.clone() if out is source else out
            self.tag(out)
        elif self.on_device(source) and target is not None and target.type == "cpu":
            self._count_sync()  # a copy back to the host waits for the device
            out = out.clone() if (out is source or self._ptr(out) == self._ptr(source)) else out
        elif self.on_device(source):
            self.tag(out)  # a dtype change stays on the device
        return out
