// A small conv net for 28×28 grey images; `train` fits it on random data (it shows the training
// machinery, not accuracy). On the wasm backend this relies on the engine's conv gradient kernels.
import * as tf from '@tensorflow/tfjs';

export const inputShape = [1, 28, 28, 1];

export function createModel(): tf.LayersModel {
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({
        inputShape: [28, 28, 1],
        filters: 8,
        kernelSize: 3,
        activation: 'relu',
        name: 'conv1',
      }),
      tf.layers.maxPooling2d({ poolSize: 2, name: 'pool1' }),
      tf.layers.conv2d({
        filters: 16,
        kernelSize: 3,
        strides: 2,
        activation: 'relu',
        name: 'conv2',
      }),
      tf.layers.flatten({ name: 'flatten' }),
      tf.layers.dense({ units: 10, activation: 'softmax', name: 'classifier' }),
    ],
  });
  model.compile({ optimizer: 'adam', loss: 'categoricalCrossentropy' });
  return model;
}

export async function train(
  model: tf.LayersModel,
  opts: { epochs?: number } = {},
): Promise<tf.History> {
  const n = 128;
  const xs = tf.randomNormal([n, 28, 28, 1], 0, 1, 'float32', 1);
  const ys = tf.oneHot(tf.randomUniform([n], 0, 10, 'int32', 2), 10);
  return model.fit(xs, ys, { epochs: opts.epochs ?? 3, batchSize: 32 });
}
