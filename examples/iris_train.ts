// Train a 4 → 10 → 3 MLP on Fisher's Iris data (examples/data/iris.csv), full batch: the
// TensorFlow.js twin of iris_train.py. `model-lens run examples/iris_train.ts --epochs 300` (or
// "Model Lens: Run Training") builds `createModel()` and calls `train(model, { epochs })`; the
// engine adds its progress callbacks to `model.fit` itself, so this file needs none of its own.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';

export const inputShape = [1, 4];

const DEFAULT_EPOCHS = 1000;
const LEARNING_RATE = 0.1;
/** Every TEST_EVERY-th flower is held out (30 of 150), the rest (120) trains, as in iris_train.py. */
const TEST_EVERY = 5;
const PRINT_EVERY_EPOCHS = 100;

export function createModel(): tf.LayersModel {
  const model = tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [4], units: 10, activation: 'relu', name: 'hidden' }),
      tf.layers.dense({ units: 3, activation: 'softmax', name: 'output' }),
    ],
  });
  model.compile({
    optimizer: tf.train.sgd(LEARNING_RATE),
    loss: 'categoricalCrossentropy',
    metrics: ['accuracy'],
  });
  return model;
}

interface Split {
  xTrain: tf.Tensor2D;
  yTrain: tf.Tensor2D;
  xTest: tf.Tensor2D;
  yTest: tf.Tensor2D;
}

/** Features standardised per column, species one-hot. */
function loadIris(): Split {
  const text = fs.readFileSync(path.join(__dirname, 'data', 'iris.csv'), 'utf8');
  const rows = text
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => line.split(',').map(Number));
  return tf.tidy(() => {
    const features = tf.tensor2d(rows.map((r) => r.slice(0, 4)));
    const { mean, variance } = tf.moments(features, 0);
    const x = features.sub(mean).div(variance.sqrt());
    const y = tf
      .oneHot(
        tf.tensor1d(
          rows.map((r) => r[4]),
          'int32',
        ),
        3,
      )
      .toFloat();
    const testRows = rows.map((_, i) => i).filter((i) => i % TEST_EVERY === 0);
    const trainRows = rows.map((_, i) => i).filter((i) => i % TEST_EVERY !== 0);
    const pick = (t: tf.Tensor, idx: number[]) =>
      tf.gather(t, tf.tensor1d(idx, 'int32')) as tf.Tensor2D;
    return {
      xTrain: pick(x, trainRows),
      yTrain: pick(y, trainRows),
      xTest: pick(x, testRows),
      yTest: pick(y, testRows),
    };
  });
}

export async function train(
  model: tf.LayersModel,
  opts: { epochs?: number } = {},
): Promise<tf.History> {
  const epochs = opts.epochs ?? DEFAULT_EPOCHS;
  const data = loadIris();
  try {
    const history = await model.fit(data.xTrain, data.yTrain, {
      epochs,
      batchSize: data.xTrain.shape[0],
      callbacks: {
        onEpochEnd: async (epoch, logs) => {
          if (epoch % PRINT_EVERY_EPOCHS === 0)
            console.log(`epoch ${epoch} loss ${logs?.loss.toFixed(4)}`);
        },
      },
    });
    const accuracy = tf.tidy(() => {
      const predicted = (model.predict(data.xTest) as tf.Tensor).argMax(1);
      return predicted.equal(data.yTest.argMax(1)).toFloat().mean().dataSync()[0];
    });
    console.log(`test accuracy ${accuracy.toFixed(3)}`);
    return history;
  } finally {
    for (const t of Object.values(data)) t.dispose();
  }
}
