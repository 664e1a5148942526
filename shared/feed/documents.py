"""The GraphQL operations the client sends to Nivoda (one POST endpoint for all of them).

The item selection is the field set the mapper reads (HEAD of the original system). Every
operation but `authenticate` is wrapped in `as(token: ...)`: Nivoda takes the token as an argument,
not as a header.
"""

from __future__ import annotations

from typing import Final

AUTHENTICATE: Final = """
query Authenticate($username: String!, $password: String!) {
  authenticate {
    username_and_password(username: $username, password: $password) {
      token
    }
  }
}
"""

COUNT: Final = """
query GetDiamondsCount($token: String!, $query: DiamondQuery!) {
  as(token: $token) {
    diamonds_by_query_count(query: $query)
  }
}
"""

ITEM_FIELDS: Final = """
  id
  price
  discount
  diamond_price
  markup_price
  markup_discount
  diamond {
    id
    availability
    HoldId
    NivodaStockId
    supplierStockId
    image
    video
    eyeClean
    brown
    green
    blue
    gray
    milky
    bowtie
    mine_of_origin
    supplier_video_link
    approval_type
    final_price
    show_measurements
    show_certificate_number
    return_window
    CertificateType
    delivery_time {
      express_timeline_applicable
      min_business_days
      max_business_days
    }
    scs_certificate
    country_of_polishing
    other
    v360 {
      id
      url
    }
    certificate {
      id
      lab
      certNumber
      pdfUrl
      shape
      fullShape
      carats
      clarity
      cut
      polish
      symmetry
      color
      length
      width
      depth
      depthPercentage
      table
      crownAngle
      crownHeight
      pavAngle
      pavHeight
      pavDepth
      floInt
      floCol
      verified
      labgrown
      labgrown_type
      treated
      girdle
      culetSize
      girdleCondition
      culet_condition
      cut_style
      keyToSymbols
      comments
      f_color
      f_intensity
      f_overtone
      colorShade
      image
      video
      country_of_origin
      v360 {
        id
        url
      }
      product_images {
        id
        url
        loupe360_url
        type
        display_index
      }
      product_videos {
        id
        url
        loupe360_url
        type
      }
    }
    supplier {
      id
      name
      legal_name
    }
  }
"""

SEARCH: Final = f"""
query DiamondsByQuery(
  $token: String!
  $query: DiamondQuery!
  $offset: Int
  $limit: Int
  $order: DiamondOrder
) {{
  as(token: $token) {{
    diamonds_by_query(query: $query, offset: $offset, limit: $limit, order: $order) {{
      total_count
      items {{{ITEM_FIELDS}}}
    }}
  }}
}}
"""
