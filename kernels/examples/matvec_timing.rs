//! Throwaway timing (not to be committed).
use std::time::Instant;
use tessera_kernels::{cpu, quant, DType, WeightView};

fn time(dtype: DType, rows: usize, cols: usize, n: usize, iters: usize) {
    let mut s = 12345u64;
    let mut rnd = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % 2000) as f32 / 1000.0 - 1.0
    };
    let data: Vec<u8> = (0..rows)
        .flat_map(|_| {
            let r: Vec<f32> = (0..cols).map(|_| rnd()).collect();
            quant::quantize_row(dtype, &r)
        })
        .collect();
    let w = WeightView::new(dtype, rows, cols, &data).unwrap();
    let x: Vec<f32> = (0..n * cols).map(|_| rnd()).collect();
    let mut y = vec![0.0; n * rows];
    for _ in 0..3 {
        cpu::matmul(&w, &x, n, &mut y);
    }
    let mut dt = f64::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        for _ in 0..iters / 20 + 1 {
            cpu::matmul(&w, &x, n, &mut y);
        }
        dt = dt.min(t.elapsed().as_secs_f64() / (iters / 20 + 1) as f64);
    }
    let macs = (rows * cols * n) as f64;
    println!("{dtype:>5} [{rows:>6} x {cols:>5}] n={n:>3}: {:>9.1} us  {:>6.2} GMAC/s  {:>6.2} GB/s weights", dt * 1e6, macs / dt / 1e9, data.len() as f64 / dt / 1e9);
}

fn main() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| {
        let args: Vec<String> = std::env::args().collect();
        let only = args.get(1).cloned();
        for dtype in DType::ALL {
            if let Some(o) = &only {
                if *o != dtype.to_string() {
                    continue;
                }
            }
            time(dtype, 576, 1536, 1, 2000);
        }
        time(DType::Q8_0, 49152, 576, 1, 20);
        time(DType::Q4_1, 576, 1536, 16, 300);
        time(DType::Q4_1, 576, 1536, 128, 30);
        time(DType::Q8_0, 1536, 576, 128, 30);
    });
    let pool2 = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    pool2.install(|| {
        println!("2 threads:");
        time(DType::Q4_1, 576, 1536, 1, 2000);
        time(DType::Q8_0, 49152, 576, 1, 20);
        time(DType::Q4_1, 576, 1536, 128, 30);
    });

}
