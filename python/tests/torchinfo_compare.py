"""torchinfo.summary and the engine's summary pass on one model and input, compared: parameters,
trainable parameters, mult-adds, Forward/backward pass bytes, every layer's output shape and
mult-adds by module path."""

import torchinfo
from in_process import rows_by_path, summary


def compare(test, model, inputs, min_layers=2):
    ti = torchinfo.summary(model, input_data=list(inputs), verbose=0, device="cpu", mode="eval")
    ours = summary(model, tuple(inputs))
    t = ours["totals"]
    test.assertEqual(t["params"], ti.total_params, "params")
    test.assertEqual(t["trainableParams"], ti.trainable_params, "trainable params")
    test.assertEqual(t["macs"], ti.total_mult_adds, "mult-adds")
    test.assertEqual(t["forwardBackwardBytes"], ti.total_output_bytes, "forward/backward bytes")
    path_of = {}
    for p, m in model.named_modules():
        path_of.setdefault(id(m), p)
    rows = rows_by_path(ours)
    last = {}
    macs = {}
    for li in ti.summary_list:
        p = path_of.get(id(li.module))
        if p is None:
            continue
        last[p] = li
        if li.is_leaf_layer:
            macs[p] = macs.get(p, 0) + li.macs
    test.assertGreaterEqual(len(last), min_layers)
    for p, li in last.items():
        shape = rows[p]["outputShape"]
        label = "output shape of %s" % (p or "(root)")
        if shape and isinstance(shape[0], list):
            # Several outputs: torchinfo shows one of them (a tuple's first, a dict's last).
            test.assertIn(li.output_size, shape, label)
        else:
            test.assertEqual(shape, li.output_size, label)
    for p, n in macs.items():
        test.assertEqual(rows[p]["macs"], n, "mult-adds of %s" % p)
    return ours, ti
