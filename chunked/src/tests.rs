use super::*;

#[test]
fn grows_one_chunk_at_a_time_without_moving_an_element() {
    let mut v: ChunkedVec<u64> = ChunkedVec::new();
    assert_eq!((v.len(), v.chunks()), (0, 0), "nothing allocated up front");
    let n = ChunkedVec::<u64>::CHUNK;
    v.push(7);
    let first: *const u64 = &v[0];
    for i in 1..5 * n as u64 {
        v.push(i);
        assert_eq!(v.chunks(), v.len().div_ceil(n));
    }
    assert_eq!(v.len(), 5 * n);
    assert!(std::ptr::eq(first, &v[0]), "element 0 was moved");
    assert_eq!(v[0], 7);
    for i in 1..5 * n {
        assert_eq!(v.get(i), Some(&(i as u64)));
    }
    assert_eq!(v.get(5 * n), None);
    assert_eq!(v.last(), Some(&(5 * n as u64 - 1)));
}

#[test]
fn pop_frees_emptied_chunks_but_one_spare_and_shrink_frees_the_spare() {
    let mut v: ChunkedVec<u32> = ChunkedVec::new();
    let n = ChunkedVec::<u32>::CHUNK;
    for i in 0..3 * n as u32 {
        v.push(i);
    }
    assert_eq!(v.chunks(), 3);
    // Empty the last chunk: it becomes the spare.
    for _ in 0..n {
        assert!(v.pop().is_some());
    }
    assert_eq!((v.len(), v.chunks()), (2 * n, 3));
    // Empty the next one: the earlier spare is freed, this one kept.
    for _ in 0..n {
        assert!(v.pop().is_some());
    }
    assert_eq!((v.len(), v.chunks()), (n, 2));
    v.shrink_to_fit();
    assert_eq!((v.len(), v.chunks()), (n, 1), "only the chunk in use");
    assert_eq!(v.last(), Some(&(n as u32 - 1)));
    for _ in 0..n {
        assert!(v.pop().is_some());
    }
    assert_eq!(v.pop(), None);
    assert!(v.is_empty());
    v.shrink_to_fit();
    assert_eq!(v.chunks(), 0, "an empty vector holds no chunk");
}

#[test]
fn a_push_after_a_pop_across_the_boundary_reuses_the_spare() {
    let mut v: ChunkedVec<u32> = ChunkedVec::new();
    let n = ChunkedVec::<u32>::CHUNK;
    for i in 0..n as u32 + 1 {
        v.push(i);
    }
    let second: *const u32 = &v[n];
    assert_eq!(v.pop(), Some(n as u32));
    assert_eq!(v.chunks(), 2, "the emptied chunk is kept");
    v.push(99);
    assert_eq!(v.chunks(), 2);
    assert!(std::ptr::eq(second, &v[n]), "the spare chunk came back");
    assert_eq!(v[n], 99);
}

#[test]
fn behaves_as_a_vec_under_mixed_operations() {
    let mut v: ChunkedVec<(u16, u8)> = ChunkedVec::new();
    let mut model: Vec<(u16, u8)> = Vec::new();
    let mut seed: u32 = 12345;
    let mut next = || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        seed >> 8
    };
    for _ in 0..200_000 {
        let r = next();
        match r % 7 {
            0..=2 => {
                let x = ((r >> 3) as u16, r as u8);
                v.push(x);
                model.push(x);
            }
            3 => assert_eq!(v.pop(), model.pop()),
            4 if !model.is_empty() => {
                let i = (r as usize >> 3) % model.len();
                v[i].1 = v[i].1.wrapping_add(1);
                model[i].1 = model[i].1.wrapping_add(1);
                assert_eq!(v.get(i), model.get(i));
            }
            5 => {
                let to = (r as usize >> 3) % (model.len() + 40);
                v.resize_with(to, || (1, 2));
                model.resize_with(to, || (1, 2));
            }
            _ => v.shrink_to_fit(),
        }
        assert_eq!(v.len(), model.len());
        assert_eq!(v.last(), model.last());
        assert!(v.chunks() <= model.len().div_ceil(ChunkedVec::<(u16, u8)>::CHUNK) + 1);
    }
    assert!(v.iter().eq(model.iter()));
    for x in v.iter_mut() {
        x.0 = x.0.wrapping_add(1);
    }
    assert!(v
        .iter()
        .map(|x| x.0)
        .eq(model.iter().map(|x| x.0.wrapping_add(1))));
}

#[test]
fn zero_sized_elements_count() {
    let mut v: ChunkedVec<()> = ChunkedVec::new();
    for _ in 0..3 * CHUNK_LEN + 1 {
        v.push(());
    }
    assert_eq!(v.len(), 3 * CHUNK_LEN + 1);
    assert_eq!(v.get(3 * CHUNK_LEN), Some(&()));
    assert_eq!(v.get(3 * CHUNK_LEN + 1), None);
}

#[test]
fn a_popped_place_is_reset_and_not_reachable() {
    let mut v: ChunkedVec<Option<String>, 4> = ChunkedVec::new();
    for s in ["a", "b", "c", "d", "e"] {
        v.push(Some(s.to_string()));
    }
    assert_eq!(v.pop(), Some(Some("e".to_string())));
    assert_eq!(v.pop(), Some(Some("d".to_string())));
    assert_eq!((v.len(), v.get(3), v.get(4)), (3, None, None));
    assert_eq!(v.last(), Some(&Some("c".to_string())));
    // The place of "d" was reset: a push there starts from it, and nothing
    // of the popped value is kept (its String was given back to the caller).
    v.push(None);
    assert_eq!(v.get(3), Some(&None));
    assert_eq!(
        v.iter().count(),
        4,
        "iteration stops at len, not the chunk's end"
    );
}

#[test]
fn a_chunk_of_any_length_works() {
    let mut v: ChunkedVec<u32, 3> = ChunkedVec::new();
    for i in 0..10 {
        v.push(i);
    }
    assert_eq!(v.chunks(), 4);
    assert!((0..10).all(|i| v[i as usize] == i));
    assert!(v.iter().copied().eq(0..10));
}

#[test]
#[should_panic(expected = "index 3 out of range for a ChunkedVec of 3")]
fn indexing_past_the_end_panics_like_a_vec() {
    let mut v: ChunkedVec<u8> = ChunkedVec::new();
    v.resize_with(3, || 0u8);
    let _ = v[3];
}
