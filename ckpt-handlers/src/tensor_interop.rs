//! [`Tensor`] beside the users' array libraries: a zero-copy safetensors view (for
//! `safetensors::serialize` and the crates that take `View`s, e.g. candle), and, with the
//! `ndarray` feature, conversions to and from `ndarray` arrays.

#[cfg(feature = "ndarray")]
use crate::Element;
use crate::Tensor;
use ckpt_core::Result;

impl Tensor {
    /// A safetensors view of this tensor's bytes, borrowed (no copy): pass it to
    /// `safetensors::serialize` or to anything that takes a `safetensors::View`.
    ///
    /// # Errors
    /// `Unsupported` for a complex128 tensor (safetensors has no such dtype); `InvalidArgument`
    /// if safetensors refuses the view (it cannot for a valid tensor).
    pub fn as_safetensors_view(&self) -> Result<safetensors::tensor::TensorView<'_>> {
        let dtype = safetensors::Dtype::try_from(self.dtype())?;
        safetensors::tensor::TensorView::new(dtype, self.shape().to_vec(), self.as_bytes()).map_err(
            |e| {
                ckpt_core::Error::invalid_argument("tensor cannot be viewed as safetensors")
                    .with_source(e)
            },
        )
    }

    /// The tensor as an n-d `ndarray` array of `T` (a copy of the elements).
    ///
    /// # Errors
    /// `InvalidArgument` when `T::DTYPE` is not the tensor's dtype (as [`Tensor::to_vec`]).
    #[cfg(feature = "ndarray")]
    pub fn to_ndarray<T: Element>(&self) -> Result<ndarray::ArrayD<T>> {
        let v = self.to_vec::<T>()?;
        ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(self.shape()), v).map_err(|e| {
            ckpt_core::Error::invalid_argument("tensor shape does not fit ndarray").with_source(e)
        })
    }

    /// A tensor holding `array`'s elements in logical C order (any memory layout, views and
    /// transposes included), of dtype `T::DTYPE` and `array`'s shape.
    ///
    /// # Errors
    /// As [`Tensor::from_slice`] (cannot fail for an array ndarray could build).
    #[cfg(feature = "ndarray")]
    pub fn from_ndarray<T, S, D>(array: &ndarray::ArrayBase<S, D>) -> Result<Tensor>
    where
        T: Element,
        S: ndarray::Data<Elem = T>,
        D: ndarray::Dimension,
    {
        let shape = array.shape().to_vec();
        let values: Vec<T> = match array.as_slice() {
            Some(s) => s.to_vec(),
            None => array.iter().copied().collect(),
        };
        Tensor::from_slice(shape, &values)
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Tensor};

    #[test]
    fn safetensors_view_borrows() {
        let t = Tensor::from_slice([2, 2], &[1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let v = t.as_safetensors_view().unwrap();
        assert_eq!(v.shape(), &[2, 2]);
        assert_eq!(v.data().as_ptr(), t.as_bytes().as_ptr());
        let c = Tensor::new(DType::C128, [1], vec![0; 16]).unwrap();
        assert!(c.as_safetensors_view().is_err());
    }

    #[cfg(feature = "ndarray")]
    #[test]
    fn ndarray_round_trip() {
        let a = ndarray::Array2::from_shape_vec((2, 3), vec![1i32, 2, 3, 4, 5, 6]).unwrap();
        let t = Tensor::from_ndarray(&a.t()).unwrap();
        assert_eq!(t.shape(), &[3, 2]);
        assert_eq!(t.to_vec::<i32>().unwrap(), [1, 4, 2, 5, 3, 6]);
        let back = t.to_ndarray::<i32>().unwrap();
        assert_eq!(back, a.t().into_dyn());
    }
}
