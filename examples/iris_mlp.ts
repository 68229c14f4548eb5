// The classic iris classifier: 4 measurements → Dense(10, relu) → Dense(3, softmax).
// Model Lens loads `createModel` (or `model`), feeds `inputShape`, and runs `train` for training.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';

export const inputShape = [1, 4];

export function createModel(): tf.LayersModel {
  const model = tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [4], units: 10, activation: 'relu', name: 'hidden' }),
      tf.layers.dense({ units: 3, activation: 'softmax', name: 'output' }),
    ],
  });
  model.compile({
    optimizer: tf.train.adam(0.05),
    loss: 'categoricalCrossentropy',
    metrics: ['accuracy'],
  });
  return model;
}

/** Features standardised per column; labels one-hot. */
function loadIris(): { xs: tf.Tensor2D; ys: tf.Tensor2D } {
  const text = fs.readFileSync(path.join(__dirname, 'data', 'iris.csv'), 'utf8');
  const rows = text
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => line.split(',').map(Number));
  const features = tf.tensor2d(rows.map((r) => r.slice(0, 4)));
  const { mean, variance } = tf.moments(features, 0);
  const xs = features.sub(mean).div(variance.sqrt()) as tf.Tensor2D;
  const ys = tf.oneHot(
    tf.tensor1d(
      rows.map((r) => r[4]),
      'int32',
    ),
    3,
  ) as tf.Tensor2D;
  return { xs, ys };
}

export async function train(
  model: tf.LayersModel,
  opts: { epochs?: number } = {},
): Promise<tf.History> {
  const { xs, ys } = loadIris();
  return model.fit(xs, ys, {
    epochs: opts.epochs ?? 30,
    batchSize: 16,
    shuffle: true,
    callbacks: {
      onEpochEnd: async (epoch, logs) => {
        console.log(
          `epoch ${epoch + 1}: loss=${logs?.loss.toFixed(4)} acc=${logs?.acc.toFixed(3)}`,
        );
      },
    },
  });
}
