"""Which graph nodes, aten ops and modules each Inductor kernel fused, and the bytes it moves.

Recorded while a compiled model compiles (:class:`Recorder`), from what torch itself says:

- **the graph dynamo traced** (the backend is called with it: :func:`recording_backend` wraps
  ``torch.compile``'s own Inductor backend and keeps each graph): per node, the torch-level
  call (``conv2d``, ``linear``, ``mul``) and the innermost module it ran in
  (``node.meta["nn_module_stack"]``, e.g. ``L['self'].layer1.0.conv1`` -> ``layer1.0.conv1``);
- **Inductor's provenance** (``torch._inductor.config.trace.provenance_tracking_level = 1``):
  the ``inductor_provenance_tracking_node_mappings`` artifact maps each kernel call site
  (``cpp_fused_relu_0:3``, ``extern_kernels.convolution:2``) to the post-grad nodes it holds
  (``cppCodeToPost``) and those to the dynamo graph's nodes (``postToPre``);
- **the generated code** (the ``inductor_output_code`` artifact): each kernel's call line
  (after its ``# [Provenance debug handles]`` comment), its pointer arguments
  (``in_ptr``/``out_ptr``/``in_out_ptr`` with their element types) and every buffer's size
  (``empty_strided_*``, ``assert_size_stride``, ``reinterpret_tensor``), hence the bytes
  the kernel reads and writes: its inputs and outputs, never its fused intermediates.

Both artifacts come through torch's structured trace log (``torch._logging``'s
``torch.__trace`` logger, read in process by a logging handler; nothing is written to disk),
on a fresh compile and on an FX-graph-cache hit alike (the cache keeps them; ``trace.*``
settings are not part of its key).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

ITEMSIZE = {"float": 4, "double": 8, "half": 2, "bfloat16": 2, "int64_t": 8, "int32_t": 4, "int16_t": 2, "int8_t": 1,
            "uint8_t": 1, "bool": 1, "fp32": 4, "fp64": 8, "fp16": 2, "bf16": 2, "i64": 8, "i32": 4, "i16": 2, "i8": 1,
            "u8": 1, "i1": 1, "float32": 4, "float64": 8, "float16": 2, "int64": 8, "int32": 4}
DEFAULT_ITEMSIZE = 4  # a buffer whose dtype the code does not state (an extern kernel's graph input)
_OPERATORS = {"truediv": "div", "floordiv": "floor_divide", "iadd": "add_", "imul": "mul_", "isub": "sub_",
              "itruediv": "div_", "getitem": "", "matmul": "matmul", "pow": "pow", "neg": "neg", "and_": "bitwise_and",
              "or_": "bitwise_or", "lt": "lt", "gt": "gt", "le": "le", "ge": "ge", "eq": "eq", "ne": "ne"}


@dataclass
class Kernel:
    """One kernel call site in a compiled graph's code."""

    handle: str  # Inductor's provenance key: "cpp_fused_relu_0:3", "extern_kernels.convolution:2"
    name: str  # as the profiler names it: "graph_0_cpp_fused_relu_0", "triton_poi_fused_add_0", "aten::convolution"
    kind: str  # "generated" or "extern"
    post_nodes: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)  # the dynamo graph's nodes it (partly) computes
    bytes: float = 0.0  # its buffer arguments: inputs + outputs (an in-out buffer twice)
    largest_input_bytes: float = 0.0  # its largest input-only buffer (a gather's table: see kernel_join)


@dataclass
class Graph:
    """One compiled graph: its nodes (name -> (aten op guess, module path)) and kernels in call order."""

    nodes: dict[str, tuple[str, str]]
    kernels: list[Kernel] = field(default_factory=list)
    label: str = ""  # "graph_0" when the code names its kernels so


def _module_path(stack: dict | None) -> str:
    """The innermost module of a node's ``nn_module_stack`` as a dotted path from the root model."""
    if not stack:
        return ""
    source = str(list(stack.values())[-1][0])
    path = re.sub(r"^L\['[^']*'\]\.?", "", source)
    path = re.sub(r"\._modules\['([^']*)'\]|\[(\d+)\]|\['([^']*)'\]", lambda m: "." + next(g for g in m.groups() if g), path)
    return path.strip(".")


def _op_name(node: Any) -> str:
    """The aten op the eager counter sees for a dynamo node: ``torch.conv2d`` -> ``aten::conv2d``."""
    if node.op == "call_method":
        base = str(node.target)
    elif node.op == "call_function":
        base = getattr(node.target, "__name__", str(node.target))
        base = _OPERATORS.get(base, base)
        if base and node.kwargs.get("inplace") and not base.endswith("_"):
            base += "_"  # F.relu(x, inplace=True) dispatches aten::relu_
    else:
        return ""
    return f"aten::{base}" if base else ""


def graph_nodes(gm: Any) -> dict[str, tuple[str, str]]:
    """name -> (aten op, module path) for the call nodes of a dynamo graph, in graph order."""
    return {n.name: (_op_name(n), _module_path(n.meta.get("nn_module_stack")))
            for n in gm.graph.nodes if n.op in ("call_function", "call_method", "call_module")}


def _node_names_pass() -> type:
    from torch._inductor.custom_graph_pass import CustomGraphPass

    class NodeNames(CustomGraphPass):
        """A pre-grad pass that changes nothing; its uuid, part of the FX graph cache's key, is the dynamo
        graph's node names. A cached graph's provenance names the nodes of the graph it was compiled
        from: the same math traced from other source (other variable names) must not be served it."""

        def __init__(self, nodes: dict) -> None:
            self.names = ",".join(nodes)

        def __call__(self, graph: Any) -> None:
            return None

        def uuid(self) -> Any:
            import hashlib

            return "harness-node-names-" + hashlib.sha256(self.names.encode()).hexdigest()[:32]

    return NodeNames


def _NodeNames(nodes: dict) -> Any:
    return _node_names_pass()(nodes)


def recording_backend(mode: str, dynamic: bool | None, recorder: "Recorder") -> Any:
    """``torch.compile``'s own Inductor backend for ``mode``, keeping each graph it is given."""
    import torch

    import torch._inductor.config as inductor_config

    class Recording(torch._TorchCompileInductorWrapper):  # type: ignore[name-defined]
        def __call__(self, model_: Any, inputs_: Any, **kwargs: Any) -> Any:
            nodes = graph_nodes(model_)
            recorder.add_graph(nodes)
            recorder.start()
            try:
                with inductor_config.patch(pre_grad_custom_pass=_NodeNames(nodes)):
                    return super().__call__(model_, inputs_, **kwargs)
            finally:
                recorder.stop()

    return Recording(None if mode == "default" else mode, None, dynamic)


class Recorder(logging.Handler):
    """Collects each compiled graph's nodes, provenance and code; listens only while the recording
    backend compiles a graph (:meth:`start` .. :meth:`stop`), so other compiles are not mixed in."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.graphs: list[Graph] = []
        self._code: str | None = None
        self._level: int | None = None

    def add_graph(self, nodes: dict[str, tuple[str, str]]) -> None:
        self.graphs.append(Graph(nodes=nodes))

    def start(self) -> None:
        import torch._inductor.config as inductor_config
        from torch._logging._internal import trace_log

        self._level = inductor_config.trace.provenance_tracking_level
        inductor_config.trace.provenance_tracking_level = max(self._level, 1)
        if self not in trace_log.handlers:
            trace_log.addHandler(self)
            trace_log.setLevel(logging.DEBUG)

    def stop(self) -> None:
        import torch._inductor.config as inductor_config
        from torch._logging._internal import trace_log

        trace_log.removeHandler(self)
        if self._level is not None:
            inductor_config.trace.provenance_tracking_level = self._level
        self._code = None

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "metadata", None) or {}
        payload = getattr(record, "payload", None)
        if not self.graphs or payload is None:
            return
        if "inductor_output_code" in meta:
            self._code = payload
        elif (meta.get("artifact") or {}).get("name") == "inductor_provenance_tracking_node_mappings" and self._code:
            try:
                self._attach(json.loads(payload), self._code)
            except (ValueError, KeyError, TypeError):  # a format this torch does not write: kernels stay unattributed
                pass
            self._code = None

    def _attach(self, mapping: dict, code: str) -> None:
        """One Inductor graph (a forward, or a backward) of the latest dynamo graph."""
        g = self.graphs[-1]
        post_to_pre = mapping.get("postToPre", {})
        label = re.search(r'"(graph_\d+)_[A-Za-z0-9_]+", nullptr\)', code)
        g.label = g.label or (label.group(1) if label else "")
        for k in parse_code(code):
            k.post_nodes = list(mapping.get("cppCodeToPost", {}).get(k.handle, []))
            k.nodes = list(dict.fromkeys(p for post in k.post_nodes for p in post_to_pre.get(post, [])))
            g.kernels.append(k)

    def kernels(self) -> list[tuple[Graph, Kernel]]:
        return [(g, k) for g in self.graphs for k in g.kernels]


_HANDLE = re.compile(r"^\s*# \[Provenance debug handles\] (\S+)$")
_ALLOC = re.compile(r"^\s*(\w+) = (?:empty_strided_\w+|empty_strided)\(\(([^)]*)\), \([^)]*\), (?:device=[^,]+, )?"
                    r"(?:dtype=)?torch\.(\w+)")
_ASSERT = re.compile(r"^\s*assert_size_stride\((\w+), \(([^)]*)\)")
_META = re.compile(r"^\s*assert_tensor_metadata\((\w+), \(([^)]*)\), \([^)]*\), torch\.(\w+)")
_REUSE = re.compile(r"^\s*(\w+) = (\w+); del \w+\s+# reuse")
_REUSE_VIEW = re.compile(r"^\s*(\w+) = reinterpret_tensor\((\w+), \(([^)]*)\)")
_VIEW = re.compile(r"reinterpret_tensor\((\w+), \(([^)]*)\)")
_DEF_CPP = re.compile(r"^(\w+) = async_compile\.cpp_pybinding\(\[([^\]]*)\]")
_DEF_TRITON = re.compile(r"^(\w+) = async_compile\.triton\('(\w+)'")
_TRITON_SIG = re.compile(r"'signature': \{([^}]*)\}")


def _numel(dims: str) -> int:
    n = 1
    for d in dims.split(","):
        d = d.strip()
        if d:
            n *= int(d) if d.isdigit() else 1  # a symbolic size (dynamic shapes) counts 1: bytes unknown
    return n


def _buffers(code: str) -> dict[str, tuple[int, int | None]]:
    """Buffer name -> (elements, itemsize or None) from allocations, size asserts and reuse lines."""
    sizes: dict[str, tuple[int, int | None]] = {}
    for line in code.splitlines():
        if m := _ALLOC.match(line):
            sizes[m.group(1)] = (_numel(m.group(2)), ITEMSIZE.get(m.group(3)))
        elif m := _META.match(line):
            sizes[m.group(1)] = (_numel(m.group(2)), ITEMSIZE.get(m.group(3)))
        elif m := _ASSERT.match(line):
            sizes.setdefault(m.group(1), (_numel(m.group(2)), None))
        elif m := _REUSE.match(line):
            if m.group(2) in sizes:
                sizes[m.group(1)] = sizes[m.group(2)]
        elif m := _REUSE_VIEW.match(line):
            sizes[m.group(1)] = (_numel(m.group(3)), sizes.get(m.group(2), (0, None))[1])
    for m in re.finditer(r"assert_size_stride_grouped\(\(([^)]*)\), \((.*?)\), \(\(", code):
        names = [x.strip() for x in m.group(1).split(",") if x.strip()]
        for name, dims in zip(names, re.findall(r"\(([^()]*)\)", m.group(2))):
            sizes.setdefault(name, (_numel(dims), None))
    return sizes


def _pointer_types(code: str) -> dict[str, list[tuple[str, int]]]:
    """Kernel name -> [(role, itemsize)] of its arguments in order (role: in, out, inout, scalar)."""
    out: dict[str, list[tuple[str, int]]] = {}
    for line in code.splitlines():
        if m := _DEF_CPP.match(line):
            types = [t.strip().strip("'") for t in m.group(2).split(",") if t.strip()]
            out[m.group(1)] = [(("in" if t.startswith("const") else "out") if t.endswith("*") else "scalar",
                                ITEMSIZE.get(t.replace("const", "").replace("*", "").strip(), DEFAULT_ITEMSIZE))
                               for t in types]
    for m in re.finditer(r"^(\w+) = async_compile\.triton\('\w+', '''(.*?)'''", code, re.S | re.M):
        sig = _TRITON_SIG.search(m.group(2))
        if sig:
            args = re.findall(r"'(\w+)': '(\*?)(\w+)'", sig.group(1))
            out[m.group(1)] = [(("inout" if a.startswith("in_out") else "in" if a.startswith("in") else "out")
                                if star else "scalar", ITEMSIZE.get(t, DEFAULT_ITEMSIZE)) for a, star, t in args]
    # a C++ kernel's in_out_ptr is read and written: the C signature says which arguments are
    for m in re.finditer(r"^(\w+) = async_compile\.cpp_pybinding\(.*?extern \"C\"[^(]*\(([^)]*)\)", code, re.S | re.M):
        names = [a.split()[-1].lstrip("*") for a in m.group(2).split(",") if a.strip()]
        roles = out.get(m.group(1), [])
        out[m.group(1)] = [("inout" if n.startswith("in_out_ptr") else r, s) for (r, s), n in zip(roles, names)]
    return out


def _split_args(text: str) -> list[str]:
    """Top-level comma-separated arguments of a call (parentheses nest)."""
    args, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
            continue
        depth += (ch in "([") - (ch in ")]")
        cur += ch
    if cur.strip():
        args.append(cur.strip())
    return args


def _arg_bytes(arg: str, sizes: dict, itemsize: int | None) -> float:
    arg = arg.split("=", 1)[1].strip() if re.match(r"^\w+=", arg) else arg
    if m := _VIEW.match(arg):
        n = _numel(m.group(2))
        size = itemsize or (sizes.get(m.group(1), (0, None))[1]) or DEFAULT_ITEMSIZE
        return float(n * size)
    if arg in sizes:
        n, own = sizes[arg]
        return float(n * (itemsize or own or DEFAULT_ITEMSIZE))
    return 0.0


def _extern_name(callee: str) -> str:
    """``extern_kernels.convolution`` -> ``aten::convolution``; ``torch.ops.mkldnn._linear_pointwise.default``
    -> ``mkldnn::_linear_pointwise`` (the name the profiler gives the op)."""
    parts = callee.split(".")
    if parts[0] == "extern_kernels":
        return f"aten::{parts[1]}"
    if parts[:2] == ["torch", "ops"] and len(parts) >= 4:
        return f"{parts[2]}::{parts[3]}"
    if parts[0] in ("aten", "torch") and len(parts) >= 2:
        return f"aten::{parts[1]}"
    return callee


def _generated_name(code: str, kernel: str) -> str:
    m = re.search(r'"((?:graph_\d+_)?%s)", nullptr\)' % re.escape(kernel), code)
    return m.group(1) if m else kernel


def parse_code(code: str) -> list[Kernel]:
    """The kernel call sites of one compiled graph's wrapper code, with the bytes each moves."""
    sizes, types = _buffers(code), _pointer_types(code)
    lines = code.splitlines()
    kernels = []
    for i, line in enumerate(lines):
        m = _HANDLE.match(line)
        if not m or i + 1 >= len(lines):
            continue
        call = lines[i + 1].strip()
        out_name, _, rhs = call.partition(" = ") if re.match(r"^\w+ = ", call) else ("", "", call)
        callee, _, rest = rhs.partition("(")
        args = _split_args(rest.rsplit(")", 1)[0])
        handle = m.group(1)
        base = callee.removesuffix(".run")
        if base in types:  # a generated kernel: its pointer arguments
            roles = types[base]
            sized = [(role, _arg_bytes(a, sizes, size)) for a, (role, size) in zip(args, roles) if role != "scalar"]
            moved = sum(b * (2 if role == "inout" else 1) for role, b in sized)
            largest_in = max((b for role, b in sized if role == "in"), default=0.0)
            name = _generated_name(code, base) if not base.startswith("triton_") else base
            kernels.append(Kernel(handle=handle, name=name, kind="generated", bytes=moved,
                                  largest_input_bytes=largest_in))
        else:  # an extern kernel: its tensor arguments and its result
            moved = sum(_arg_bytes(a, sizes, None) for a in args) + _arg_bytes(out_name, sizes, None) if out_name else \
                sum(_arg_bytes(a, sizes, None) for a in args)
            kernels.append(Kernel(handle=handle, name=_extern_name(callee), kind="extern", bytes=moved))
    return kernels


ATTRIBUTE = "_harness_provenance"


def record(model: Any, kwargs: dict) -> dict:
    """``model.compile``'s keywords with a recording Inductor backend (same mode, same dynamic), its
    :class:`Recorder` kept on the model (:func:`recorder_of`)."""
    rec = Recorder()
    object.__setattr__(model, ATTRIBUTE, rec)
    backend = recording_backend(kwargs.get("mode") or "default", kwargs.get("dynamic"), rec)
    return {**{k: v for k, v in kwargs.items() if k != "mode"}, "backend": backend}


def recorder_of(model: Any) -> Recorder | None:
    return getattr(model, ATTRIBUTE, None)
