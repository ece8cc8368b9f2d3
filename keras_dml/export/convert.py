"""TensorFlow function -> ONNX model: freezing, the graph surgery tf2onnx needs, and the conversion.

The ONNX model is converted from the function's frozen graph with
`tf2onnx.convert.from_graph_def`, not with `tf2onnx.convert.from_function` (which Keras's
own `model.export(format="onnx")` uses): that path lists constants the function captures,
such as the mean and variance of the `Normalization` layer inside EfficientNet and
ConvNeXt, among the graph's inputs, so the ONNX model asks for them at run time. Freezing
first turns every capture into a constant.
"""
import numpy as np


def write_onnx(serve, path, opset, dynamic_dims):
    """`serve` as an ONNX model whose inputs and output keep their names; free dimensions named `dynamic_dims`."""
    import onnx
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = serve.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete, aggressive_inlining=True)
    (output,), (output_name,) = frozen.outputs, concrete.structured_outputs
    names = {tensor.name: tensor.name.split(":")[0] for tensor in frozen.inputs}  # the TensorSpec names
    proto, _ = tf2onnx.convert.from_graph_def(
        _inlinable(frozen.graph.as_graph_def()), input_names=list(names), output_names=[output.name],
        opset=opset, custom_op_handlers={"Erfc": (_erfc_as_one_minus_erf, [])},
        tensors_to_rename={**names, output.name: output_name})
    for value in (*proto.graph.input, *proto.graph.output):
        for dim, name in zip(value.type.tensor_type.shape.dim, dynamic_dims):
            if not dim.HasField("dim_value"):
                dim.dim_param = name
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _inlinable(graph_def):
    """`graph_def` with its nested XLA functions made inlinable.

    Keras's TensorFlow backend runs grouped convolutions (ConvNeXt's depthwise 7x7) in a
    nested `tf.function(jit_compile=True)`, which freezing keeps as a no-inline function
    call that ONNX cannot express. Without these attributes the function inliner of
    grappler, which tf2onnx runs, inlines the plain Conv2D inside.
    """
    for function in graph_def.library.function:
        for key in ("_noinline", "_XlaMustCompile"):
            if key in function.attr:
                del function.attr[key]
    for node in graph_def.node:
        if "_XlaMustCompile" in node.attr:
            del node.attr["_XlaMustCompile"]
    return graph_def


def _erfc_as_one_minus_erf(ctx, node, name, args):
    """tf2onnx handler: `erfc(x) = 1 - erf(x)`. tf2onnx 1.17 cannot convert Erfc, which TF's exact GELU uses."""
    import tf2onnx

    erf = ctx.make_node("Erf", [node.input[0]])
    dtype = tf2onnx.utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    one = ctx.make_const(tf2onnx.utils.make_name(f"{node.name}/one"), np.array(1, dtype=dtype))
    node.type = "Sub"
    ctx.replace_inputs(node, [one.output[0], erf.output[0]])
    return node
